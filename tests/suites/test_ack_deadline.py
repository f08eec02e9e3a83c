"""Every POST /webhook is answered within ACK_DEADLINE_SECONDS, whatever holds the inbox or the queue: an
outside writer holding SQLite (BEGIN EXCLUSIVE) or PostgreSQL (LOCK TABLE) gets the deliveries answered
503 with Retry-After in time, Svix's retries are 2xx once it lets go, and none is lost; a locked queue
does not hold the answer back. Below them, the writers' lock and group commit stop waiting at a deadline.
"""

import json
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager, suppress
from datetime import timedelta
from pathlib import Path

import pytest
import redis
import requests
from sqlalchemy import Connection, Engine, create_engine, insert, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import NullPool
from support.deliveries import drain
from support.processes import process_env, wait_until
from support.standin import ROUTE_ID
from werkzeug.serving import make_server

import defaults
from clock import utcnow
from errors import InboxUnavailable
from inbox import Inbox, Status, metadata
from inbox.database import sqlite_engine
from inbox.group_commit import GroupCommit
from inbox.writers_lock import WritersLock
from optipick_standin import StandInApi
from services import Services
from signatures import new_message_id, signed_headers
from webapp import create_app

ACK_DEADLINE = 1.0
# What an answer may take beyond the deadline on a busy two-core machine. The waits these tests guard
# against were 5 s (one busy timeout) and more.
SLACK = 0.75
BODY = json.dumps({"request_id": ROUTE_ID})


@pytest.fixture
def environ(environ: dict[str, str]) -> dict[str, str]:
    """The receiver's environment with a short acknowledgement deadline."""
    return {**environ, "ACK_DEADLINE_SECONDS": str(ACK_DEADLINE)}


@contextmanager
def held_by_an_outside_writer(database_url: str) -> Iterator[None]:
    """A connection of another program holds the inbox: SQLite's BEGIN EXCLUSIVE, or PostgreSQL's
    ACCESS EXCLUSIVE lock on inbox_events (which blocks readers too)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        assert url.database is not None
        held = sqlite3.connect(url.database, isolation_level=None)
        held.execute("begin exclusive")
        try:
            yield
        finally:
            held.rollback()
            held.close()
        return
    engine = create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            conn.execute(text("lock table inbox_events in access exclusive mode"))
            try:
                yield
            finally:
                conn.rollback()
    finally:
        engine.dispose()


@contextmanager
def serving(services: Services) -> Iterator[str]:
    """The app behind werkzeug's threaded server on a free loopback port; yields its base URL."""
    httpd = make_server("127.0.0.1", 0, create_app(services=services), threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_port}"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


def post(base_url: str, secret: str, msg_id: str) -> tuple[int, float, dict[str, str]]:
    """POST a delivery signed now for `msg_id` (a Svix retry is signed afresh); its status, seconds, headers."""
    started = time.monotonic()
    response = requests.post(f"{base_url}/webhook", data=BODY, headers=signed_headers(secret, BODY, msg_id), timeout=30)
    return response.status_code, time.monotonic() - started, dict(response.headers)


def post_together(base_url: str, secret: str, msg_ids: list[str]) -> list[tuple[int, float, dict[str, str]]]:
    with ThreadPoolExecutor(max_workers=len(msg_ids)) as pool:
        return list(pool.map(lambda msg_id: post(base_url, secret, msg_id), msg_ids))


def assert_all_answered_503_in_time(answers: list[tuple[int, float, dict[str, str]]]) -> None:
    assert [status for status, _, _ in answers] == [503] * len(answers), answers
    assert all(int(headers["Retry-After"]) > 0 for _, _, headers in answers)
    slowest = max(seconds for _, seconds, _ in answers)
    assert slowest < ACK_DEADLINE + SLACK, f"the slowest answer took {slowest:.2f} s"


def retry_until_stored(base_url: str, secret: str, msg_ids: list[str]) -> None:
    """Svix's retries once the inbox is free: each is 2xx (stored now, or already stored by a commit
    that came too late for its first answer)."""
    for msg_id in msg_ids:
        status, _, _ = post(base_url, secret, msg_id)
        assert status == 200, msg_id


# The request path, in process, on each backend -----------------------------------------------------


def test_deliveries_are_answered_in_time_while_an_outside_writer_holds_the_inbox(backend, services, secret, api):
    """With the inbox held by another program and two worker claims queued for it, six deliveries at once
    are each answered 503 with Retry-After within the deadline; after it lets go, Svix's retries are
    2xx, and every delivery is stored exactly once."""
    with serving(services) as base_url:
        before = [new_message_id() for _ in range(2)]
        assert [post(base_url, secret, msg_id)[0] for msg_id in before] == [200, 200]
        first = services.inbox.by_message_id(before[0])
        second = services.inbox.by_message_id(before[1])
        assert first is not None
        assert second is not None
        during = [new_message_id() for _ in range(6)]
        claims: list[threading.Thread] = []
        with held_by_an_outside_writer(backend.database_url):
            # The workers' bookkeeping waits for the same lock (on SQLite, each in its turn on the
            # writers' lock, for a whole busy timeout): the deliveries must not wait behind it.
            for event in (first, second):
                claim = threading.Thread(target=claim_quietly, args=(services.inbox, event.id), daemon=True)
                claim.start()
                claims.append(claim)
            time.sleep(0.2)
            answers = post_together(base_url, secret, during)
        for claim in claims:
            claim.join(timeout=30)
        assert_all_answered_503_in_time(answers)
        retry_until_stored(base_url, secret, during)
    for msg_id in before + during:
        assert services.inbox.by_message_id(msg_id) is not None, msg_id
    assert services.inbox.count() == 8


def claim_quietly(inbox: Inbox, event_id: int) -> None:
    """A worker's claim; failing after its busy timeout is what a worker does under a held lock."""
    with suppress(OperationalError):
        inbox.claim(event_id, lease_seconds=60)


@contextmanager
def queue_held_by_another_program(queue_url: str) -> Iterator[None]:
    """Another program holds the queue: BEGIN EXCLUSIVE on queue.db, an ACCESS EXCLUSIVE lock on
    PostgreSQL's huey_task, or Redis told to pause every client's writes."""
    url = make_url(queue_url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        assert url.database is not None
        held = sqlite3.connect(url.database, isolation_level=None)
        held.execute("begin exclusive")
        try:
            yield
        finally:
            held.rollback()
            held.close()
    elif backend == "postgresql":
        engine = create_engine(queue_url, poolclass=NullPool)
        try:
            with engine.connect() as conn:
                conn.execute(text("lock table huey_task in access exclusive mode"))
                try:
                    yield
                finally:
                    conn.rollback()
        finally:
            engine.dispose()
    else:
        client = redis.Redis.from_url(queue_url)
        try:
            client.execute_command("CLIENT", "PAUSE", 2000, "WRITE")  # let go by UNPAUSE, or after 2 s
            try:
                yield
            finally:
                client.execute_command("CLIENT", "UNPAUSE")
        finally:
            client.close()


def test_a_locked_queue_does_not_hold_the_answer_back(backend, services, sender, settings, api):
    """With the queue held by another program (on each backend), a delivery is still answered 200 at
    once, not after Huey's 5 s busy timeout or whenever the queue answers; its task is the
    reconciler's, which enqueues it once the queue is free."""
    msg_id = new_message_id()
    with queue_held_by_another_program(settings.queue_url):
        started = time.monotonic()
        response = sender.send(BODY, msg_id=msg_id)
        took = time.monotonic() - started
    assert response.status_code == 200
    assert took < 2 * defaults.ENQUEUE_TIMEOUT_SECONDS + SLACK, f"answered after {took:.2f} s"
    assert services.queue.pending() == 0
    later = utcnow() + timedelta(seconds=defaults.RECONCILE_AFTER_SECONDS + 1)
    assert services.processor.reconcile(now=later) == 1
    assert drain(services) == 1
    stored = services.inbox.by_message_id(msg_id)
    assert stored is not None
    assert stored.status is Status.DONE


def test_a_delivery_waits_for_a_briefly_held_inbox_within_its_deadline(services, sender):
    """An outside writer that lets go well inside the deadline costs a delivery only the wait: it is
    stored and answered 200, not 503."""
    database_file = make_url(services.settings.database_url).database
    assert database_file is not None
    held = sqlite3.connect(database_file, isolation_level=None, check_same_thread=False)
    held.execute("begin exclusive")
    release = threading.Timer(0.15, lambda: (held.rollback(), held.close()))
    release.start()
    try:
        response = sender.send(BODY)
    finally:
        release.join()
    assert response.status_code == 200


def test_the_service_starts_while_an_outside_writer_holds_the_inbox(backend, services, settings):
    """A process starting on an existing inbox that another program holds (a gunicorn worker booting,
    or restarted, during the hold) reads what it needs and starts, instead of failing to boot after a
    busy timeout."""
    with held_by_an_outside_writer(backend.database_url):
        started = time.monotonic()
        Services.build(settings).close()
        took = time.monotonic() - started
    assert took < ACK_DEADLINE + SLACK, f"started after {took:.2f} s"


# The writers' lock and group commit ----------------------------------------------------------------


@contextmanager
def lock_held_by_another_process(path: Path, seconds: float) -> Iterator[subprocess.Popen[str]]:
    """Another process takes an exclusive flock of `path` and keeps it `seconds` (or until stopped)."""
    script = (
        "import fcntl, os, sys, time\n"
        "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)\n"
        "fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "print('held', flush=True)\n"
        "time.sleep(float(sys.argv[2]))\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.kill()
        holder.wait(timeout=10)
        if holder.stdout is not None:
            holder.stdout.close()


def test_a_turn_with_a_deadline_stops_waiting_at_it(tmp_path):
    """While another process holds the writers' lock, a turn with a deadline raises InboxUnavailable at
    the deadline (a turn without one would wait for as long as the lock is held)."""
    lock = WritersLock(tmp_path / "inbox.db-writers.lock")
    try:
        with lock_held_by_another_process(lock.path, 30):
            started = time.monotonic()
            with pytest.raises(InboxUnavailable), lock.turn(deadline=started + 0.3):
                pass
            waited = time.monotonic() - started
        assert 0.25 < waited < 0.3 + SLACK
        # Once the other process has let go, turns are had at once, with or without a deadline.
        with lock.turn(deadline=time.monotonic() + 1):
            pass
        with lock.turn():
            pass
    finally:
        lock.close()


def test_a_turn_gets_the_lock_the_moment_another_process_lets_go(tmp_path):
    """A turn with a deadline that the other process's hold ends before gets the lock then, not at the
    deadline; and the next turn, after one that gave up, still gets it."""
    lock = WritersLock(tmp_path / "inbox.db-writers.lock")
    try:
        with lock_held_by_another_process(lock.path, 0.4):
            with pytest.raises(InboxUnavailable), lock.turn(deadline=time.monotonic() + 0.1):
                pass
            started = time.monotonic()
            with lock.turn(deadline=started + 5):
                waited = time.monotonic() - started
        assert waited < 0.4 + SLACK
    finally:
        lock.close()


def test_a_turn_waits_for_this_processs_other_writers_no_longer_than_its_deadline(tmp_path):
    """A thread of the same process holding a turn (a worker's write in a long busy wait) keeps a
    turn with a deadline waiting only until that deadline."""
    lock = WritersLock(tmp_path / "inbox.db-writers.lock")
    holding, done = threading.Event(), threading.Event()

    def hold() -> None:
        with lock.turn():
            holding.set()
            done.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        holding.wait(5)
        started = time.monotonic()
        with pytest.raises(InboxUnavailable), lock.turn(deadline=started + 0.2):
            pass
        assert time.monotonic() - started < 0.2 + SLACK
    finally:
        done.set()
        holder.join(10)
        lock.close()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = sqlite_engine(f"sqlite:///{tmp_path / 'group.db'}", "FULL")
    metadata.create_all(engine)
    yield engine
    engine.dispose()


def add_history_row(connection: Connection, action: str) -> None:
    """A write to any table will do; inbox_history needs no event row when SQLite's foreign keys are off."""
    connection.execute(insert(metadata.tables["inbox_history"]).values(event_id=1, at=utcnow(), action=action))


def test_a_batch_past_its_deadline_fails_without_being_written(engine):
    """A write whose deadline has passed is told InboxUnavailable, and nothing is written."""
    group: GroupCommit[str, None] = GroupCommit(engine, add_history_row)
    with pytest.raises(InboxUnavailable):
        group.submit("late", deadline=time.monotonic() - 0.01)
    with engine.connect() as conn:
        assert conn.scalar(text("select count(*) from inbox_history")) == 0
    group.submit("on time", deadline=time.monotonic() + 5)
    with engine.connect() as conn:
        assert conn.scalar(text("select count(*) from inbox_history")) == 1


def test_a_batch_waits_for_a_held_database_only_until_its_deadline(engine, tmp_path):
    """A write with a deadline, the database held by another connection, fails at the deadline with
    SQLite's own "database is locked" (its busy timeout set to the time left), not after 5 s."""
    bounds: list[float] = []

    def bound(connection: Connection, seconds: float) -> None:
        bounds.append(seconds)
        connection.exec_driver_sql(f"PRAGMA busy_timeout={int(seconds * 1000)}")

    group: GroupCommit[str, None] = GroupCommit(engine, add_history_row, bound=bound)
    held = sqlite3.connect(tmp_path / "group.db", isolation_level=None)
    held.execute("begin exclusive")
    try:
        started = time.monotonic()
        with pytest.raises(OperationalError, match="locked"):
            group.submit("held", deadline=started + 0.3)
        waited = time.monotonic() - started
    finally:
        held.rollback()
        held.close()
    assert len(bounds) == 1
    assert 0 < bounds[0] <= 0.3
    assert waited < 0.3 + SLACK


def test_every_write_of_a_batch_that_gets_no_turn_is_told(engine):
    """A batch that does not get its turn in time fails for every thread in it, the leader and the
    threads that queued behind it alike, instead of leaving them waiting."""

    def no_turn_in_time(_deadline: float | None) -> AbstractContextManager[None]:
        time.sleep(0.2)  # the other threads queue meanwhile
        raise InboxUnavailable("no turn in time")

    group: GroupCommit[str, None] = GroupCommit(engine, add_history_row, turn=no_turn_in_time)
    outcomes: dict[int, object] = {}

    def submit(i: int) -> None:
        time.sleep(0.05 * bool(i))  # the first leads; the others queue behind its turn
        try:
            outcomes[i] = group.submit(f"w{i}", deadline=time.monotonic() + 5)
        except InboxUnavailable as exc:
            outcomes[i] = exc

    threads = [threading.Thread(target=submit, args=(i,), daemon=True) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert not any(thread.is_alive() for thread in threads)
    assert all(isinstance(outcomes[i], InboxUnavailable) for i in range(4))


# Real processes: python main.py, and gunicorn beside python main.py worker ---------------------------


def hold_the_inbox_while_workers_write(
    environ: dict[str, str], api: StandInApi, base_url: str, secret: str, together: int
) -> tuple[list[tuple[int, float, dict[str, str]]], list[str]]:
    """Deliveries whose results come slowly, so the workers record their outcomes while an outside
    writer holds the inbox; meanwhile six deliveries arrive, `together` at a time. Once it lets go,
    Svix retries them. Returns the six answers, and the message ids of every delivery sent."""
    api.delay = 0.6
    first = [new_message_id() for _ in range(4)]
    assert [post(base_url, secret, msg_id)[0] for msg_id in first] == [200] * 4
    during = [new_message_id() for _ in range(6)]
    with held_by_an_outside_writer(environ["DATABASE_URL"]):
        time.sleep(1.0)  # the fetches end and their outcomes wait for the inbox
        answers = [
            answer
            for wave in range(0, len(during), together)
            for answer in post_together(base_url, secret, during[wave : wave + together])
        ]
        time.sleep(0.5)
    api.delay = 0
    retry_until_stored(base_url, secret, during)
    return answers, first + during


@pytest.mark.slow
def test_python_main_answers_in_time_while_an_outside_writer_holds_the_inbox(
    launch, environ, inbox, api, secret, port, base_url
):
    """`python main.py` (web and worker in one process) answers each delivery within the deadline
    while another program holds the SQLite inbox and its workers wait to record outcomes; after,
    Svix's retries are stored and every delivery is there once."""
    receiver = launch(["main.py"], process_env(environ, PORT=str(port)))
    receiver.wait_healthy(base_url)
    answers, msg_ids = hold_the_inbox_while_workers_write(environ, api, base_url, secret, together=6)
    assert_all_answered_503_in_time(answers)
    assert all(inbox.by_message_id(msg_id) is not None for msg_id in msg_ids)
    assert inbox.count() == len(msg_ids)
    assert receiver.running()


@pytest.mark.slow
def test_gunicorn_answers_in_time_while_an_outside_writer_holds_the_inbox(
    launch, environ, inbox, api, secret, port, base_url
):
    """Under gunicorn (two workers) beside `python main.py worker`, each delivery a web worker takes is
    answered within the deadline while another program holds the SQLite inbox, though the web workers
    and the worker all wait for it; after, Svix's retries are stored and every delivery is there once."""
    env = process_env(environ, PORT=str(port))
    web = launch(["-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "2", "webapp:create_app()"], env)
    worker = launch(["main.py", "worker"], env)
    web.wait_healthy(base_url)
    # Two at a time: a sync worker takes one request at a time, and one it has not taken yet waits in
    # the listening socket, before the service's clock for it starts (README, Production).
    answers, msg_ids = hold_the_inbox_while_workers_write(environ, api, base_url, secret, together=2)
    assert_all_answered_503_in_time(answers)
    wait_until(lambda: inbox.count() == len(msg_ids), "every delivery to be stored", timeout=10, watch=[web, worker])
    assert all(inbox.by_message_id(msg_id) is not None for msg_id in msg_ids)
