"""Group commit (group_commit.py) and the writers' lock (writers_lock.py) on real SQLite files:
concurrent writes share transactions, each thread gets its own outcome only after the commit that
holds it, a bad write fails alone, and the writing processes take turns on the lock file."""

import fcntl
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Connection, Engine, Integer, MetaData, String, Table, event, func, insert, select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from support.backends import Backend

from group_commit import GroupCommit
from inbox import Inbox, NewDelivery, Status, create_db_engine, writers_lock
from writers_lock import WritersLock

metadata = MetaData()
rows = Table("rows", metadata, Column("id", Integer, primary_key=True), Column("name", String(50), nullable=False))


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_db_engine(f"sqlite:///{tmp_path / 'group.db'}")
    metadata.create_all(engine)
    yield engine
    engine.dispose()


def insert_row(connection: Connection, name: str | None) -> int:
    return connection.execute(insert(rows).values(name=name)).inserted_primary_key[0]


def stored_names(engine: Engine) -> list[str]:
    with engine.connect() as connection:
        return sorted(connection.scalars(select(rows.c.name)))


def count_commits(engine: Engine) -> list[int]:
    commits = [0]

    @event.listens_for(engine, "commit")
    def _count(_connection: Connection) -> None:
        commits[0] += 1

    return commits


def run_together(count: int, work: Callable[[int], object]) -> list[object]:
    """Run work(0) … work(count-1) on `count` threads released at once; their results or exceptions, in order."""
    outcomes: list[object] = [None] * count
    start = threading.Barrier(count)

    def one(i: int) -> None:
        start.wait()
        try:
            outcomes[i] = work(i)
        except Exception as exc:  # the test looks at what each thread got
            outcomes[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return outcomes


def first_then_the_rest(submit: Callable[[Any], object], items: list[Any]) -> Callable[[int], object]:
    """Thread 0 submits at once, the others a moment later, while thread 0's held-up write is in flight."""

    def work(i: int) -> object:
        if i:
            time.sleep(0.05)
        return submit(items[i])

    return work


def slow_first(write: Callable[[Connection, str | None], int], first: str) -> Callable[[Connection, str | None], int]:
    """`write`, with the write of `first` held up, so that the other threads queue behind its commit."""

    def held_up(connection: Connection, name: str | None) -> int:
        if name == first:
            time.sleep(0.2)
        return write(connection, name)

    return held_up


def test_a_lone_write_is_committed_and_returned(engine: Engine) -> None:
    """One write: its result comes back, and the row is there for another connection to read."""
    group = GroupCommit(engine, insert_row)
    assert group.submit("only") == 1
    assert stored_names(engine) == ["only"]


def test_writes_that_queue_during_a_commit_share_the_next_one(engine: Engine) -> None:
    """Sixteen threads writing at once: every one gets its own row id, all rows are stored, and they
    took far fewer commits than writes."""
    commits = count_commits(engine)
    group = GroupCommit(engine, slow_first(insert_row, "w0"))
    names = [f"w{i}" for i in range(16)]
    outcomes = run_together(16, first_then_the_rest(group.submit, names))
    ids = [outcome for outcome in outcomes if isinstance(outcome, int)]
    assert len(set(ids)) == 16
    assert stored_names(engine) == sorted(names)
    assert commits[0] < 16 / 2


def test_no_thread_hears_back_before_the_commit_that_holds_its_write(engine: Engine) -> None:
    """When submit returns, a separate connection already sees the row: the answer follows the commit."""
    group = GroupCommit(engine, slow_first(insert_row, "w0"))
    seen: list[bool] = []

    def write_then_look(i: int) -> None:
        if i:
            time.sleep(0.05)
        group.submit(f"w{i}")
        with engine.connect() as connection:
            seen.append(connection.scalar(select(func.count()).where(rows.c.name == f"w{i}")) == 1)

    run_together(8, write_then_look)
    assert seen == [True] * 8


def test_a_write_that_cannot_be_stored_fails_alone(engine: Engine) -> None:
    """A NULL name breaks its batch's transaction; the others are written again one by one and stored,
    and only the bad one's thread gets the error."""
    group = GroupCommit(engine, slow_first(insert_row, "w0"))
    names = ["w0", *(None if i == 4 else f"w{i}" for i in range(1, 8))]
    outcomes = run_together(8, first_then_the_rest(group.submit, names))
    assert isinstance(outcomes[4], IntegrityError)
    assert all(isinstance(outcome, int) for i, outcome in enumerate(outcomes) if i != 4)
    assert stored_names(engine) == sorted(name for name in names if name is not None)


def test_a_database_failure_fails_the_whole_batch_at_once(engine: Engine) -> None:
    """An OperationalError (here: a table that is not there) goes to every thread of the batch, each
    write is not tried again alone, and nothing is stored."""
    attempts: list[str] = []

    def broken(connection: Connection, name: str) -> int:
        attempts.append(name)
        if name == "w0":
            time.sleep(0.2)
        connection.execute(insert(rows).values(name=name))
        connection.execute(text("insert into missing_table values (1)"))
        return 0

    group = GroupCommit(engine, broken)
    outcomes = run_together(6, first_then_the_rest(group.submit, [f"w{i}" for i in range(6)]))
    assert all(isinstance(outcome, OperationalError) for outcome in outcomes)
    # Two transactions, each ended by its first write: w0's alone, then the other five's. No write was
    # tried again on its own.
    assert len(attempts) == len(set(attempts)) == 2
    assert stored_names(engine) == []


def test_writes_keep_working_after_a_failed_batch(engine: Engine) -> None:
    """A failure hands the lead on like a success does: later writes are committed."""
    group = GroupCommit(engine, insert_row)
    with pytest.raises(IntegrityError):
        group.submit(None)
    assert group.submit("after") == 1
    assert stored_names(engine) == ["after"]


@contextmanager
def held_by_another_process(lock_file: Path, seconds: float) -> Iterator[None]:
    """Another process takes the writers' lock and holds it for `seconds`; the body runs once it has it."""
    read, write = os.pipe()
    holder = os.fork()
    if holder == 0:
        descriptor = os.open(lock_file, os.O_RDWR | os.O_CREAT)
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        os.write(write, b"x")
        time.sleep(seconds)
        os._exit(0)
    try:
        os.read(read, 1)
        yield
    finally:
        os.waitpid(holder, 0)
        os.close(read)
        os.close(write)


def test_a_leader_writes_only_in_its_turn_on_the_writers_lock(engine: Engine, tmp_path: Path) -> None:
    """While another process holds the writers' lock, a write waits; it is committed once the lock is
    let go (SQLite's own lock would make it sleep and poll instead)."""
    lock = WritersLock(tmp_path / "group.db-writers.lock")
    group = GroupCommit(engine, insert_row, turn=lock.turn)
    with held_by_another_process(lock.path, 0.5):
        started = time.monotonic()
        group.submit("second")
        waited = time.monotonic() - started
    lock.close()
    assert waited > 0.3
    assert stored_names(engine) == ["second"]


def test_the_workers_bookkeeping_also_waits_for_its_turn(tmp_path: Path) -> None:
    """A claim (a worker's write) waits while another process holds the inbox's writers' lock, then succeeds."""
    inbox = Inbox.open(f"sqlite:///{tmp_path / 'inbox.db'}")
    try:
        added = inbox.add(NewDelivery("msg_1", Status.RECEIVED, b"{}", {}, request_id="r1"))
        with held_by_another_process(tmp_path / "inbox.db-writers.lock", 0.5):
            started = time.monotonic()
            claim = inbox.claim(added.event.id, lease_seconds=60)
            waited = time.monotonic() - started
        assert claim is not None
        assert waited > 0.3
    finally:
        inbox.close()


def test_a_sqlite_inbox_keeps_its_lock_file_beside_the_database(tmp_path: Path) -> None:
    """The lock file is `<database>-writers.lock`; an in-memory database has none."""
    engine = create_db_engine(f"sqlite:///{tmp_path / 'inbox.db'}")
    lock = writers_lock(engine)
    assert lock is not None
    assert lock.path == tmp_path / "inbox.db-writers.lock"
    assert writers_lock(create_db_engine("sqlite://")) is None
    engine.dispose()


def test_the_same_delivery_six_times_at_once_is_stored_once(backend: Backend) -> None:
    """Six threads adding the same svix-id at once (redeliveries racing the first), on each backend:
    one row, one thread created it, and all are told about that row."""
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
    """On each backend, the event `Inbox.add` hands back for a new delivery (built from what it wrote, not
    read back) equals the stored row as `get` reads it, and a redelivery is answered with that row."""
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


def test_a_batch_is_written_in_the_given_order(engine: Engine) -> None:
    """With `order`, the writes of a batch go in that order whatever order their threads queued in, so
    two processes inserting the same keys lock them in the same order."""
    written: list[str] = []

    def record(connection: Connection, name: str) -> int:
        written.append(name)
        return insert_row(connection, name)

    group = GroupCommit(engine, slow_first(record, "w0"), order=lambda name: name)
    names = ["w0", "w7", "w6", "w5", "w4", "w3", "w2", "w1"]
    outcomes = run_together(8, first_then_the_rest(group.submit, names))
    assert all(isinstance(outcome, int) for outcome in outcomes)
    assert written[0] == "w0"
    assert written[1:] == sorted(written[1:])
