"""The inbox (inbox.py) on real databases: durable SQLite settings, one row per svix-id however many add it at
once, claims only one worker wins and that fence off a worker whose lease ran out, writers taking turns on
the SQLite lock file, and the history of every step."""

import itertools
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

from support.backends import Backend
from support.cli import run_cli
from support.concurrency import ToldTurns, held_by_another_process, run_together
from support.deliveries import route_event
from support.outcomes import REFUSED_KEY, RELEASED, holder_of, story
from support.standin import ROUTE_ID

from inbox import ClaimLost, Inbox, NewDelivery, SqliteDatabase, Status

# SQLite settings and the writers' lock --------------------------------------------------------------


def test_sqlite_inbox_runs_in_wal_mode_with_full_sync(services):
    """The SQLite inbox commits durably: WAL journal and synchronous=FULL on every connection."""
    with services.inbox.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


def test_a_sqlite_inbox_keeps_its_lock_file_beside_the_database(tmp_path: Path) -> None:
    """The lock file is `<database>-writers.lock`; an in-memory database has none."""
    database = SqliteDatabase(f"sqlite:///{tmp_path / 'inbox.db'}")
    assert database.writers is not None
    assert database.writers.path == tmp_path / "inbox.db-writers.lock"
    assert SqliteDatabase("sqlite://").writers is None
    database.close()


def test_the_workers_bookkeeping_also_waits_for_its_turn(tmp_path: Path) -> None:
    """A claim (a worker's write) waits while another process holds the inbox's writers' lock, then succeeds."""
    inbox = Inbox.open(f"sqlite:///{tmp_path / 'inbox.db'}")
    claims: list[object] = []
    claimant = threading.Thread(target=lambda: claims.append(inbox.claim(added.event.id, lease_seconds=60)))
    try:
        added = inbox.add(NewDelivery("msg_1", Status.RECEIVED, b"{}", {}, request_id="r1"))
        assert inbox.database.writers is not None
        lock = ToldTurns(inbox.database.writers)
        inbox.database.writers = lock  # the lock the inbox's writes take turns on
        with held_by_another_process(tmp_path / "inbox.db-writers.lock") as let_go:
            claimant.start()
            assert lock.asked.wait(10), "the claim never asked for its turn"
            claimant.join(timeout=0.3)
            assert claimant.is_alive(), "the claim did not wait for the other process's turn"
            let_go()
            claimant.join(timeout=10)
        assert not claimant.is_alive()
        [claim] = claims
        assert claim is not None
    finally:
        inbox.close()


# Adding deliveries --------------------------------------------------------------------------------


def test_the_same_delivery_six_times_at_once_is_stored_once(backend: Backend) -> None:
    """Six threads adding one svix-id at once, on each backend: one row, created by one of them, told to all."""
    inbox = Inbox.open(backend.database_url)
    delivery = NewDelivery("msg_same", Status.RECEIVED, b"{}", {"svix-id": "msg_same"}, request_id="r1")
    try:
        outcomes = run_together(6, lambda _i: inbox.add(delivery))
        assert [type(outcome).__name__ for outcome in outcomes] == ["Added"] * 6
        assert sorted(outcome.created for outcome in outcomes) == [False] * 5 + [True]  # type: ignore[attr-defined]
        assert {outcome.event.id for outcome in outcomes} == {1}  # type: ignore[attr-defined]
        assert inbox.count() == 1
    finally:
        inbox.close()


def test_what_add_returns_is_the_row_as_stored(backend: Backend) -> None:
    """On each backend, the event Inbox.add returns (new or redelivered) equals the stored row as get reads it."""
    inbox = Inbox.open(backend.database_url)
    headers = {"svix-id": "msg_stored", "svix-timestamp": "1700000000", "content-type": "application/json"}
    delivery = NewDelivery(
        "msg_stored",
        Status.INVALID,
        b'{"type": "route.optimized"}',
        headers,
        event_type="route.optimized",
        path_type="route",
        kind="route",
        error="no request_id",
    )
    # A time in another zone, with microseconds: what comes back is UTC and exact, as stored.
    now = datetime(2026, 12, 3, 9, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    try:
        first = inbox.add(delivery, now=now)
        again = inbox.add(delivery)
        stored = inbox.get(first.event.id)
        assert (first.created, again.created) == (True, False)
        assert first.event == stored == again.event
        assert stored is not None
        assert stored.received_at == datetime(2026, 12, 3, 7, 30, 15, 123456, tzinfo=UTC)
        assert first.event.received_at.tzinfo is UTC
        assert first.event.updated_at.tzinfo is UTC
        assert (stored.status, stored.last_error, stored.attempts) == (Status.INVALID, "no request_id", 0)
        assert stored.headers == headers
    finally:
        inbox.close()


# Claims -------------------------------------------------------------------------------------------


SECOND = timedelta(seconds=1)


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


def test_two_claims_at_the_same_time_only_one_wins(api, services, sender, settings):
    """Of two claims on the same row at the same moment, only the first wins."""
    stored = route_event(services, sender)
    now = datetime.now(UTC)
    first = services.inbox.claim(stored.id, settings.lease_seconds, now=now)
    second = services.inbox.claim(stored.id, settings.lease_seconds, now=now)
    assert first is not None
    assert second is None
    assert services.inbox.get(stored.id).claim_token == first.token


def test_concurrent_claims_from_threads_only_one_wins(api, services, sender, settings):
    """Many threads claiming the same row at once: exactly one gets it."""
    stored = route_event(services, sender)
    now = datetime.now(UTC)
    threads = 8
    barrier = threading.Barrier(threads)
    claims = []

    def claim() -> None:
        barrier.wait()
        claims.append(services.inbox.claim(stored.id, settings.lease_seconds, now=now))

    workers = [threading.Thread(target=claim) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=10)
    won = [c for c in claims if c is not None]
    assert len(claims) == threads
    assert len(won) == 1
    row = services.inbox.get(stored.id)
    assert (row.claim_token, row.attempts) == (won[0].token, 1)


def test_stale_claim_changes_nothing(api, services, sender, settings):
    """A claim whose lease ran out and was taken over can neither finish, retry, renew nor reserve: all False."""
    stored = route_event(services, sender)
    lease = settings.lease_seconds
    t = datetime.now(UTC)
    old = services.inbox.claim(stored.id, lease, now=t)
    assert services.inbox.claim(stored.id, lease, now=t + seconds(lease - 1)) is None  # still held
    new = services.inbox.claim(stored.id, lease, now=t + seconds(lease + 1))
    assert old is not None
    assert new is not None
    before = services.inbox.get(stored.id)

    later = t + seconds(lease + 2)
    assert services.inbox.finish(old, Status.DONE, now=later) is False
    assert services.inbox.retry_later(old, "old worker", at=later + seconds(10), now=later) is False
    assert services.inbox.renew(old, lease, now=later) is False
    assert services.inbox.reserve(old, "route", ROUTE_ID, "route.optimized") == ClaimLost()

    assert services.inbox.get(stored.id) == before
    assert before.claim_token == new.token
    assert before.status is Status.PROCESSING
    assert holder_of(services.inbox, "route", ROUTE_ID) is None
    assert services.inbox.renew(new, lease, now=later) is True
    assert services.inbox.finish(new, Status.DONE, now=later) is True


# History ------------------------------------------------------------------------------------------


def test_history_records_every_step_in_order(environ, services, sender, api):
    """The history records claimed, retrying, done, duplicate, replayed, released, dead in order, attempt and error."""
    api.fail_first("route", ROUTE_ID, (503, {}, {"message": "Service Unavailable"}))
    event = route_event(services, sender)
    start = datetime.now(UTC) - timedelta(minutes=1)
    assert services.processor.process(event.id, now=start) is Status.RETRYING
    assert services.processor.process(event.id, now=start + 10 * SECOND) is Status.DONE
    copy = route_event(services, sender)
    assert services.processor.process(copy.id, now=start + 11 * SECOND) is Status.DUPLICATE

    assert run_cli(environ, "replay", event.message_id).exit_code == 0
    later = datetime.now(UTC) + SECOND
    claim = services.inbox.claim(event.id, 60, now=later)
    assert services.inbox.release(claim, now=later)
    api.fail_first("route", ROUTE_ID, (403, {}, {"message": "Forbidden"}))
    assert services.processor.process(event.id, now=later + SECOND) is Status.DEAD

    history = services.inbox.history_of(event.id)
    assert [(h.action, h.attempt) for h in history] == [
        ("claimed", 1),
        ("retrying", 1),
        ("claimed", 2),
        ("done", 2),
        ("replayed", None),
        ("claimed", 1),
        ("released", 1),
        ("claimed", 1),
        ("dead", 1),
    ]
    errors = [h.error for h in history]
    assert errors[:7] == [
        None,
        f"GET /optimize/route/{ROUTE_ID} answered 503",
        None,
        None,
        "replayed as received",
        None,
        RELEASED,
    ]
    assert errors[7] is None
    assert errors[8].startswith(REFUSED_KEY)
    assert all(a.at <= b.at for a, b in itertools.pairwise(history))
    assert story(services, copy.id) == [
        ("claimed", 1, None),
        ("duplicate", 1, f"route {ROUTE_ID} is handled by {event.message_id}"),
    ]
