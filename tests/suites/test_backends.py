"""The same code on every backend: SQLite files, PostgreSQL with a Redis queue, and PostgreSQL alone.

Each test that takes `backend` runs three times (see conftest.py): the PostgreSQL/Redis runs need
TEST_DATABASE_URL and TEST_REDIS_URL, are skipped without them, and fail without them under CI=true.
Deliveries are signed for real, go through the Flask app, the real queue and the stand-in API.
"""

import json
import signal
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, timedelta
from pathlib import Path

import pytest
import redis
from huey import PostgresHuey, RedisHuey, SqliteHuey
from sqlalchemy import create_engine, text, update
from sqlalchemy.pool import NullPool
from support.backends import Backend, schema_url
from support.concurrency import in_parallel
from support.counting_handler import read_counts
from support.deliveries import deliver, drain, post_delivery
from support.processes import Process, free_port, process_env, wait_until
from support.standin import API_KEY, CLUSTER_ID, ROUTE_ID

import defaults
import work_queue
from clock import utcnow
from inbox import Inbox, NewDelivery, Status, events
from signatures import new_message_id, signed_headers

EXAMPLE_USER = "673f48095739843f4de65ec9"
HUEY_CLASSES = {"sqlite": SqliteHuey, "postgres+redis": RedisHuey, "postgres+pghuey": PostgresHuey}


def result_files(settings) -> list[Path]:
    return sorted(settings.results_dir.rglob("*.json"))


# The whole flow --------------------------------------------------------------------------------


def test_the_configured_backend_is_the_one_in_use(backend: Backend, services):
    """DATABASE_URL and QUEUE_URL pick the inbox database and Huey storage; PostgreSQL tables stay in one schema."""
    assert type(services.queue.huey) is HUEY_CLASSES[backend.name]
    assert services.inbox.engine.dialect.name == ("postgresql" if backend.postgres else "sqlite")
    if backend.postgres:
        with services.inbox.engine.connect() as conn:
            assert conn.scalar(text("show synchronous_commit")) == "on"
            tables = set(
                conn.scalars(
                    text("select table_name from information_schema.tables where table_schema = current_schema()")
                )
            )
            assert conn.scalar(text("select current_schema()")).startswith("test_")
        expected = {"inbox_events", "inbox_history", "inbox_schema"}
        if backend.name == "postgres+pghuey":
            expected |= {"huey_task", "huey_schedule", "huey_kv", "huey_counter"}
        assert tables == expected


def test_signed_deliveries_are_fetched_once_and_written(backend, sender, services, api, settings, secret, caplog):
    """A route and a cluster delivery go through the app, the real queue and the stand-in API to one file each."""
    route = sender.send({"request_id": ROUTE_ID}, path="/webhook/route")
    cluster = sender.send({"request_id": CLUSTER_ID, "type": "cluster.optimized"})
    assert (route.status_code, route.get_json()) == (200, {"status": "received"})
    assert (cluster.status_code, cluster.get_json()) == (200, {"status": "received"})
    assert services.queue.pending() == 2

    assert drain(services) == 2

    assert services.queue.pending() == 0
    done = services.inbox.latest()
    assert [(e.kind, e.request_id, e.status, e.attempts) for e in reversed(done)] == [
        ("route", ROUTE_ID, Status.DONE, 1),
        ("cluster", CLUSTER_ID, Status.DONE, 1),
    ]
    assert [h.action for h in services.inbox.history_of(done[0].id)] == ["claimed", "done"]
    assert api.fetches == {("route", ROUTE_ID): 1, ("cluster", CLUSTER_ID): 1}
    assert result_files(settings) == [
        settings.results_dir / "cluster" / f"{CLUSTER_ID}.json",
        settings.results_dir / "route" / f"{ROUTE_ID}.json",
    ]
    written = json.loads((settings.results_dir / "route" / f"{ROUTE_ID}.json").read_text())
    assert written["request_id"] == ROUTE_ID
    assert secret not in caplog.text
    assert API_KEY not in caplog.text


def test_concurrent_redeliveries_store_one_row_and_fetch_once(backend, app, services, api, settings, secret):
    """The same message delivered by eight requests at once is stored once, enqueued once and fetched once."""
    body = json.dumps({"request_id": ROUTE_ID})
    headers = signed_headers(secret, body, new_message_id())

    def post():
        response = app.test_client().post("/webhook/route", data=body, headers=headers)
        return response.status_code, response.get_json()["status"]

    answers = in_parallel(8, post)

    assert sorted(answers) == [(200, "received")] + [(200, "redelivered")] * 7
    assert services.inbox.count() == 1
    assert services.queue.pending() == 1
    assert drain(services) == 1
    assert services.inbox.latest()[0].status is Status.DONE
    assert api.fetches[("route", ROUTE_ID)] == 1
    assert len(result_files(settings)) == 1


@pytest.mark.parametrize("state", ["received", "lease ran out"])
def test_concurrent_claims_have_one_winner(backend, sender, services, state):
    """Eight workers claiming the same event at once: exactly one gets it, and the attempt is counted once."""
    stored = deliver(sender, services.inbox, {"request_id": ROUTE_ID}, path="/webhook/route")
    now = utcnow()
    attempts_before = 0
    if state == "lease ran out":
        assert services.inbox.claim(stored.id, 60, now=now - timedelta(seconds=120)) is not None
        attempts_before = 1

    claims = in_parallel(8, lambda: services.inbox.claim(stored.id, 60, now=now))

    winners = [claim for claim in claims if claim is not None]
    assert len(winners) == 1
    event = services.inbox.get(stored.id)
    assert event.status is Status.PROCESSING
    assert event.claim_token == winners[0].token
    assert event.attempts == attempts_before + 1
    assert [h.action for h in services.inbox.history_of(stored.id)] == ["claimed"] * (attempts_before + 1)


@pytest.mark.parametrize("backend", ["postgres+redis"], indirect=True)
@pytest.mark.parametrize("holder", ["commits", "rolls back"])
def test_a_claim_blocked_by_an_uncommitted_claim_rechecks_the_row(backend, sender, services, holder):
    """PostgreSQL READ COMMITTED: a claim blocked on another's row lock re-checks its WHERE clause after it."""
    stored = deliver(sender, services.inbox, {"request_id": ROUTE_ID}, path="/webhook/route")
    engine = services.inbox.engine
    outcome: dict = {}
    with engine.connect() as other_worker:
        transaction = other_worker.begin()
        # What Inbox.claim does, left uncommitted: another worker in the middle of claiming the row.
        other_worker.execute(
            update(events)
            .where(events.c.id == stored.id, events.c.status == Status.RECEIVED)
            .values(
                status=Status.PROCESSING,
                claim_token="another-worker",
                lease_until=utcnow() + timedelta(seconds=60),
                attempts=events.c.attempts + 1,
            )
        )
        claimant = threading.Thread(target=lambda: outcome.update(claim=services.inbox.claim(stored.id, 60)))
        claimant.start()

        def claimant_waits_for_the_lock() -> bool:
            with engine.connect() as conn:
                return bool(
                    conn.scalar(
                        text(
                            "select count(*) from pg_stat_activity where datname = current_database() "
                            "and cardinality(pg_blocking_pids(pid)) > 0 and query ilike 'update inbox_events%'"
                        )
                    )
                )

        wait_until(claimant_waits_for_the_lock, "the claim to wait for the other worker's row lock", timeout=10)
        assert "claim" not in outcome
        if holder == "commits":
            transaction.commit()
        else:
            transaction.rollback()
    claimant.join(timeout=10)
    assert not claimant.is_alive()

    event = services.inbox.get(stored.id)
    assert event.attempts == 1
    if holder == "commits":
        assert outcome["claim"] is None
        assert event.claim_token == "another-worker"
    else:
        assert outcome["claim"] is not None
        assert event.claim_token == outcome["claim"].token


# Recovery by the reconciler --------------------------------------------------------------------


def test_reconciler_enqueues_a_lost_task_again(backend, sender, services, api, settings):
    """A task lost from the queue (its consumer died) is enqueued again by the reconciler once due, and done once."""
    stored = deliver(sender, services.inbox, {"request_id": ROUTE_ID}, path="/webhook/route")
    assert services.queue.huey.dequeue() is not None  # taken by a consumer that then died
    assert services.queue.pending() == 0

    assert services.processor.reconcile() == 0  # not yet: a task that is merely queued is not doubled
    later = utcnow() + timedelta(seconds=defaults.RECONCILE_AFTER_SECONDS + 1)
    assert services.processor.reconcile(now=later) == 1
    assert services.queue.pending() == 1
    assert drain(services) == 1

    assert services.inbox.get(stored.id).status is Status.DONE
    assert api.fetches[("route", ROUTE_ID)] == 1
    assert len(result_files(settings)) == 1


def test_reconciler_recovers_an_expired_lease(backend, sender, services, api, settings):
    """An event whose worker died mid-attempt is taken again once its lease has run out, and finished."""
    stored = deliver(sender, services.inbox, {"request_id": ROUTE_ID}, path="/webhook/route")
    assert services.queue.huey.dequeue() is not None  # the dead worker's task
    dead_worker = services.inbox.claim(stored.id, 60, now=utcnow() - timedelta(seconds=61))
    assert dead_worker is not None

    assert services.processor.reconcile() == 1
    assert drain(services) == 1

    event = services.inbox.get(stored.id)
    assert (event.status, event.attempts) == (Status.DONE, 2)
    assert not services.inbox.finish(dead_worker, Status.DONE)  # the dead worker's claim is fenced off
    assert api.fetches[("route", ROUTE_ID)] == 1
    assert len(result_files(settings)) == 1


@pytest.mark.parametrize("backend", ["postgres+pghuey"], indirect=True)
def test_reconcilers_side_by_side_hand_out_each_due_event_once(backend, services):
    """Four reconcilers at once (one per consumer) hand out every due event, none of them twice (SKIP LOCKED)."""
    ids = [
        services.inbox.add(
            NewDelivery(
                new_message_id(), Status.RECEIVED, b"{}", {}, "route.optimized", kind="route", request_id=f"{i:024x}"
            )
        ).event.id
        for i in range(200)
    ]
    later = utcnow() + timedelta(seconds=defaults.RECONCILE_AFTER_SECONDS + 1)

    batches = in_parallel(4, lambda: services.inbox.due(now=later))

    handed_out = [event_id for batch in batches for event_id in batch]
    assert sorted(handed_out) == sorted(ids)
    assert services.inbox.due(now=later) == []  # each one's next look was pushed ahead


# Duplicates, retries and dead ends -------------------------------------------------------------


def test_second_message_for_the_same_optimization_is_a_duplicate(backend, sender, services, api, settings):
    """A second message for one optimization is a duplicate naming the first: one fetch, one handler call."""
    first = deliver(sender, services.inbox, {"request_id": ROUTE_ID}, path="/webhook/route")
    second = deliver(
        sender, services.inbox, {"request_id": ROUTE_ID}, path=f"/webhook/route.optimized.Example.{EXAMPLE_USER}"
    )

    assert drain(services) == 2

    assert services.inbox.get(first.id).status is Status.DONE
    duplicate = services.inbox.get(second.id)
    assert duplicate.status is Status.DUPLICATE
    assert duplicate.last_error == f"route {ROUTE_ID} is handled by {first.message_id}"
    assert api.fetches[("route", ROUTE_ID)] == 1
    assert len(result_files(settings)) == 1


def test_failed_fetch_is_retried_through_the_queue_schedule(backend, sender, services, api, settings):
    """A 503 from the API makes the event retrying, with its retry in the backend's schedule; the retry finishes it."""
    api.fail_first("route", ROUTE_ID, (503, {}, {"detail": "busy"}))
    stored = deliver(sender, services.inbox, {"request_id": ROUTE_ID}, path="/webhook/route")

    drain(services)

    retrying = services.inbox.get(stored.id)
    assert retrying.status is Status.RETRYING
    assert retrying.last_error == f"GET /optimize/route/{ROUTE_ID} answered 503"
    huey = services.queue.huey
    [scheduled] = huey.scheduled()
    assert scheduled.args == (stored.id,)
    eta = scheduled.eta.replace(tzinfo=UTC)  # Huey keeps naive UTC
    assert abs((eta - retrying.next_attempt_at).total_seconds()) < 2
    assert huey.read_schedule(scheduled.eta - timedelta(seconds=1)) == []
    assert [task.args for task in huey.read_schedule(scheduled.eta)] == [(stored.id,)]
    assert huey.scheduled_count() == 0

    # The scheduled task runs process(id) when due; run it at the event's own retry time.
    assert services.processor.process(stored.id, now=retrying.next_attempt_at) is Status.DONE
    event = services.inbox.get(stored.id)
    assert (event.status, event.attempts, event.last_error) == (Status.DONE, 2, None)
    assert api.fetches[("route", ROUTE_ID)] == 2
    assert len(result_files(settings)) == 1


def test_refused_api_key_is_dead_at_once(backend, sender, services, api, settings, caplog):
    """A 403 from the API makes the event dead after one attempt, with nothing scheduled and no key in the logs."""
    api.fail_first("route", ROUTE_ID, (403, {}, {"message": "Forbidden"}))
    stored = deliver(sender, services.inbox, {"request_id": ROUTE_ID}, path="/webhook/route")

    assert drain(services) == 1

    event = services.inbox.get(stored.id)
    assert (event.status, event.attempts) == (Status.DEAD, 1)
    assert "OPTIPICK_API_KEY" in event.last_error
    assert services.queue.huey.scheduled_count() == 0
    assert services.processor.reconcile(now=utcnow() + timedelta(days=1)) == 0
    assert result_files(settings) == []
    assert API_KEY not in caplog.text


# Start-up on an empty PostgreSQL database ----------------------------------------------------


@pytest.mark.parametrize("backend", ["postgres+pghuey"], indirect=True)
def test_processes_starting_together_on_an_empty_database_all_come_up(backend, postgres_admin):
    """Several processes creating the inbox's and Huey's tables at once (gunicorn workers, consumers) all succeed."""
    base = backend.database_url
    for _ in range(10):
        schema = "test_" + uuid.uuid4().hex[:16]
        with postgres_admin.begin() as conn:
            conn.execute(text(f'create schema "{schema}"'))
        url = schema_url(base, schema)
        try:

            def start_up(url=url) -> str:
                inbox = Inbox.open(url)
                inbox.engine.dispose()
                work_queue.close_huey(work_queue.create_huey(url))
                return "up"

            assert in_parallel(6, start_up) == ["up"] * 6
        finally:
            with postgres_admin.begin() as conn:
                conn.execute(text(f'drop schema "{schema}" cascade'))


# Several processes on PostgreSQL + Redis ---------------------------------------------------------


@contextmanager
def waiting_consumers(backend: Backend) -> Iterator[Callable[[], int]]:
    """A function telling how many consumer threads wait for work: Redis connections in BRPOP, or
    PostgreSQL connections that LISTEN for Huey's notifications."""
    if backend.name == "postgres+redis":
        client = redis.Redis.from_url(backend.queue_url)
        try:
            yield lambda: sum(1 for entry in client.client_list() if entry.get("cmd") == "brpop")
        finally:
            client.close()
        return
    engine = create_engine(backend.database_url, poolclass=NullPool)
    query = text(
        "select count(*) from pg_stat_activity where datname = current_database() "
        "and query ilike 'listen %' and query like :channel"
    )

    def listening() -> int:
        with engine.connect() as conn:
            return conn.scalar(query, {"channel": f"%{work_queue.QUEUE_NAME}%"})

    try:
        yield listening
    finally:
        engine.dispose()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["postgres+redis", "postgres+pghuey"], indirect=True)
def test_gunicorn_and_two_workers_process_each_delivery_exactly_once(backend, environ, api, secret, tmp_path):
    """gunicorn (2 workers) and two `main.py worker`s take 50 deliveries, 10 sent twice, to one fetch and file each."""
    kinds = ["route", "cluster"] * 25
    request_ids = [f"{i:024x}" for i in range(1, 51)]
    for kind, request_id in zip(kinds, request_ids, strict=True):
        api.add_result(kind, request_id)
    api.delay = 0.05  # every fetch takes a moment, so the work spreads over both workers
    deliveries = [(kind, request_id, new_message_id()) for kind, request_id in zip(kinds, request_ids, strict=True)]
    sends = deliveries + deliveries[::5]  # every fifth message delivered twice, the same svix-id

    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    env = process_env(
        environ, PORT=str(port), HANDLER_MODULES="support.counting_handler", COUNT_FILE=str(tmp_path / "count")
    )
    gunicorn = ["-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "2", "webapp:create_app()"]
    processes = [
        Process(gunicorn, env, tmp_path / "web.log"),
        Process(["main.py", "worker"], env, tmp_path / "worker-1.log"),
        Process(["main.py", "worker"], env, tmp_path / "worker-2.log"),
    ]
    web, *workers = processes
    inbox = Inbox.open(environ["DATABASE_URL"])
    try:
        web.wait_healthy(base_url)
        with waiting_consumers(backend) as waiting:
            wait_until(lambda: waiting() >= 8, "both workers' 4 threads to wait for work", watch=processes)

        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(
                pool.map(
                    lambda d: post_delivery(base_url, secret, {"request_id": d[1]}, f"/webhook/{d[0]}", d[2])[1],
                    sends,
                )
            )
        assert statuses == [200] * len(sends)

        wait_until(
            lambda: inbox.count(Status.DONE) == len(deliveries),
            "every delivery to be done",
            timeout=60,
            watch=processes,
        )
        assert inbox.count() == len(deliveries)
        assert api.fetches == dict.fromkeys(zip(kinds, request_ids, strict=True), 1)
        assert sorted(read_counts(tmp_path / "count")) == sorted(f"{k} {r} {m}" for k, r, m in deliveries)
        files = sorted(Path(environ["RESULTS_DIR"]).rglob("*.json"))
        assert files == sorted(Path(environ["RESULTS_DIR"]) / kind / f"{rid}.json" for kind, rid, _ in deliveries)
        for worker in workers:
            assert ": done (" in worker.log(), "one worker did all the work"

        for worker in workers:
            worker.signal(signal.SIGINT)
        for worker in workers:
            assert worker.wait(timeout=30) == 0, worker.log()[-3000:]
        for process in processes:
            assert secret not in process.log()
            assert API_KEY not in process.log()
    finally:
        inbox.engine.dispose()
        for process in processes:
            process.stop(timeout=5)
