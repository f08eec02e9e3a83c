"""Group commit (group_commit.py) on real SQLite files: concurrent writes share transactions, each thread gets
its own outcome only after the commit that holds it, a bad write fails alone, and a leader writes only in its
turn on the writers' lock (writers_lock.py). Threads are put in order by events (a write held in flight, the
queue of waiting writes watched), never by sleeps."""

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Connection, Engine, Integer, MetaData, String, Table, event, func, insert, select, text
from sqlalchemy.exc import IntegrityError, OperationalError
from support.concurrency import ToldTurns, held_by_another_process

from inbox.database import sqlite_engine
from inbox.group_commit import GroupCommit
from inbox.writers_lock import WritersLock

metadata = MetaData()
rows = Table("rows", metadata, Column("id", Integer, primary_key=True), Column("name", String(50), nullable=False))


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = sqlite_engine(f"sqlite:///{tmp_path / 'group.db'}", "FULL")
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


class HeldWrite:
    """`write`, with the write of `item` held up in flight (`in_flight` is set) until the test sets `go_on`."""

    def __init__(self, write: Callable[[Connection, Any], int], item: Any) -> None:
        self.write = write
        self.item = item
        self.in_flight = threading.Event()
        self.go_on = threading.Event()

    def __call__(self, connection: Connection, item: Any) -> int:
        if item == self.item:
            self.in_flight.set()
            assert self.go_on.wait(10), "the held write was never let go on"
        return self.write(connection, item)


class WatchedQueue(list):
    """GroupCommit's queue of waiting writes (its private `_waiting` list), telling the test each time a thread
    has queued its write."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = threading.Condition()

    def append(self, waiting: Any) -> None:
        super().append(waiting)
        with self.changed:
            self.changed.notify_all()

    def wait_for(self, count: int) -> None:
        with self.changed:
            assert self.changed.wait_for(lambda: len(self) >= count, timeout=10), f"{len(self)} of {count} queued"


def behind_a_held_write(group: GroupCommit, held: HeldWrite, count: int, work: Callable[[int], object]) -> list[object]:
    """Thread 0 runs work(0), whose write `held` holds up in flight; then threads 1 … count-1 run work(i), and
    the held write goes on only once all their writes are queued behind it. What each thread got (its result
    or its exception), in order."""
    queue = WatchedQueue()
    group._waiting = queue  # where GroupCommit queues each waiting write (its _reset() made an empty list)
    outcomes: list[object] = [None] * count

    def one(i: int) -> None:
        try:
            outcomes[i] = work(i)
        except Exception as exc:  # the test looks at what each thread got
            outcomes[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    threads[0].start()
    try:
        assert held.in_flight.wait(10), "the first write never started"
        for thread in threads[1:]:
            thread.start()
        queue.wait_for(count - 1)
    finally:
        held.go_on.set()
        for thread in threads:
            if thread.ident is not None:
                thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)
    return outcomes


def test_a_lone_write_is_committed_and_returned(engine: Engine) -> None:
    """One write: its result comes back, and the row is there for another connection to read."""
    group = GroupCommit(engine, insert_row)
    assert group.submit("only") == 1
    assert stored_names(engine) == ["only"]


def test_writes_that_queue_during_a_commit_share_the_next_one(engine: Engine) -> None:
    """Writes queued during a commit share the next one: sixteen rows, each its own id, in far fewer commits."""
    commits = count_commits(engine)
    held = HeldWrite(insert_row, "w0")
    group = GroupCommit(engine, held)
    names = [f"w{i}" for i in range(16)]
    outcomes = behind_a_held_write(group, held, 16, lambda i: group.submit(names[i]))
    ids = [outcome for outcome in outcomes if isinstance(outcome, int)]
    assert len(set(ids)) == 16
    assert stored_names(engine) == sorted(names)
    assert commits[0] < 16 / 2


def test_no_thread_hears_back_before_the_commit_that_holds_its_write(engine: Engine) -> None:
    """When submit returns, a separate connection already sees the row: the answer follows the commit."""
    held = HeldWrite(insert_row, "w0")
    group = GroupCommit(engine, held)
    seen: list[bool] = []

    def write_then_look(i: int) -> None:
        group.submit(f"w{i}")
        with engine.connect() as connection:
            seen.append(connection.scalar(select(func.count()).where(rows.c.name == f"w{i}")) == 1)

    behind_a_held_write(group, held, 8, write_then_look)
    assert seen == [True] * 8


def test_a_write_that_cannot_be_stored_fails_alone(engine: Engine) -> None:
    """A write that breaks its batch (a NULL name) fails alone: the others are written again one by one."""
    held = HeldWrite(insert_row, "w0")
    group = GroupCommit(engine, held)
    names = ["w0", *(None if i == 4 else f"w{i}" for i in range(1, 8))]
    outcomes = behind_a_held_write(group, held, 8, lambda i: group.submit(names[i]))
    assert isinstance(outcomes[4], IntegrityError)
    assert all(isinstance(outcome, int) for i, outcome in enumerate(outcomes) if i != 4)
    assert stored_names(engine) == sorted(name for name in names if name is not None)


def test_a_database_failure_fails_the_whole_batch_at_once(engine: Engine) -> None:
    """An OperationalError fails every write of its batch at once, none tried again alone, nothing stored."""
    attempts: list[str] = []

    def broken(connection: Connection, name: str) -> int:
        attempts.append(name)
        connection.execute(insert(rows).values(name=name))
        connection.execute(text("insert into missing_table values (1)"))
        return 0

    held = HeldWrite(broken, "w0")
    group = GroupCommit(engine, held)
    outcomes = behind_a_held_write(group, held, 6, lambda i: group.submit(f"w{i}"))
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


def test_a_leader_writes_only_in_its_turn_on_the_writers_lock(engine: Engine, tmp_path: Path) -> None:
    """While another process holds the writers' lock a write waits, and it is committed once the lock is let go."""
    lock = ToldTurns(WritersLock(tmp_path / "group.db-writers.lock"))
    group = GroupCommit(engine, insert_row, turn=lock.turn)
    written: list[int] = []
    writer = threading.Thread(target=lambda: written.append(group.submit("second")))
    try:
        with held_by_another_process(lock.lock.path) as let_go:
            writer.start()
            assert lock.asked.wait(10), "the write never asked for its turn"
            writer.join(timeout=0.3)
            assert writer.is_alive(), "the write did not wait for the other process's turn"
            assert stored_names(engine) == []
            let_go()
            writer.join(timeout=10)
    finally:
        lock.close()
    assert not writer.is_alive()
    assert written == [1]
    assert stored_names(engine) == ["second"]


def test_a_batch_is_written_in_the_given_order(engine: Engine) -> None:
    """With `order`, a batch is written in that order whatever order its threads queued in (no lock-order deadlock)."""
    written: list[str] = []

    def record(connection: Connection, name: str) -> int:
        written.append(name)
        return insert_row(connection, name)

    held = HeldWrite(record, "w0")
    group = GroupCommit(engine, held, order=lambda name: name)
    names = ["w0", "w7", "w6", "w5", "w4", "w3", "w2", "w1"]
    outcomes = behind_a_held_write(group, held, 8, lambda i: group.submit(names[i]))
    assert all(isinstance(outcome, int) for outcome in outcomes)
    assert written[0] == "w0"
    assert written[1:] == sorted(written[1:])
