"""Group commit: the deliveries that arrive while one commit is on its way to the disk share the next.

Each acknowledgement waits for a durable commit, and a durable commit waits for the disk (an fsync
on SQLite with synchronous=FULL, a WAL flush on PostgreSQL). One commit per delivery pays that wait,
and a transaction's fixed costs (a pooled connection, BEGIN, COMMIT), for every delivery.

Here the threads of a process that have a write to make queue up, and one of them, the leader,
writes everything waiting in one transaction, commits once, and wakes each writer with its own
result. Then it hands the lead to the first thread that queued meanwhile, if any, and returns. No
thread is added and nothing is delayed on purpose: a lone write is committed at once by its own
thread, and a batch is whatever queued while the previous commit was in flight, so batches grow
exactly when the disk is the limit.

On SQLite, a leader writes during its turn on the writers' lock (writers_lock.py), so the leaders of
several processes (gunicorn's workers) queue for the database instead of sleeping in its busy handler.

What a thread is told is true of its own write: a result only after the commit that holds it, an
exception when that commit failed. When a batch fails because of one of its writes (bad data, a
constraint), each write is tried again in a transaction of its own, so one write that cannot be
stored never fails the others. When the database itself fails (locked too long, disk full,
connection lost: an OperationalError), the whole batch fails at once: alone, each write would fail
the same way, one timeout after another.

A write may come with a deadline (a delivery's: it must be answered in time). A batch then waits for
its turn, and for locks inside the database (through `bound`: SQLite's busy timeout, PostgreSQL's lock
and statement timeouts), only until the earliest deadline among its writes, which is its first
write's, since the queue is first come, first served. So the waits of the writers in line do not add
up: each delivery is told by its own deadline, and the batches after it start with their own. A batch
whose deadline has passed fails without being tried (InboxUnavailable).

After each commit, `verify` checks that what was committed to is still the inbox (on SQLite, that the
file at the path is still the one open); when it is not, the batch is told it failed.
"""

import logging
import os
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import InterfaceError, OperationalError

from errors import InboxUnavailable

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")

# Writes per transaction at most: bounds how long the first of a batch waits for the last.
MAX_BATCH = 64

# Failures of the database itself, not of one write: the whole batch fails at once.
WHOLE_BATCH_FAILURES = (OperationalError, InterfaceError, InboxUnavailable)

Turn = Callable[[float | None], AbstractContextManager[Any]]


def no_turn(_deadline: float | None = None) -> AbstractContextManager[None]:
    """What a writer holds where writers need not take turns (PostgreSQL): nothing."""
    return nullcontext()


@dataclass(eq=False)
class _Waiting(Generic[Item, Result]):
    """One thread's write, and where its outcome is left for it."""

    item: Item
    deadline: float | None  # time.monotonic() by which the thread must hear back, if any
    woken: threading.Event = field(default_factory=threading.Event)
    lead: bool = False  # this thread writes the next batch (its own write is at the head)
    told: bool = False  # its outcome is set
    result: Result | None = None
    error: Exception | None = None


class GroupCommit(Generic[Item, Result]):
    """Runs `write(connection, item)` for items submitted from any thread, many to a transaction.

    `turn(deadline)`: what a leader holds while it writes (on SQLite, a turn on the writers' lock),
    waiting for it no later than `deadline` when there is one.
    `order`: a batch is written in this order. Where two processes' batches may both insert the same
    unique key (a redelivery racing the first delivery on PostgreSQL, where each waits for the other's
    row lock), one order for all keeps them from waiting on each other in a circle (a deadlock).
    `bound(connection, seconds)`: called first in the transaction of a batch with a deadline, to keep
    the database from waiting on a lock longer than the seconds left.
    `verify()`: called after each commit; raising tells the batch its commit did not count.
    """

    def __init__(
        self,
        engine: Engine,
        write: Callable[[Connection, Item], Result],
        turn: Turn = no_turn,
        order: Callable[[Item], Any] | None = None,
        max_batch: int = MAX_BATCH,
        bound: Callable[[Connection, float], None] | None = None,
        verify: Callable[[], None] | None = None,
    ) -> None:
        self._engine = engine
        self._write = write
        self._turn = turn
        self._order = order
        self._max_batch = max_batch
        self._bound = bound
        self._verify = verify
        self._reset()

    def _reset(self) -> None:
        """State of this process's own: a forked child (a gunicorn worker) starts with none queued."""
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._waiting: list[_Waiting[Item, Result]] = []
        self._leading = False  # a thread is writing, or has been woken to

    def submit(self, item: Item, deadline: float | None = None) -> Result:
        """Write `item` and return what `write` returned, once the transaction that holds it is committed.

        Raises what the write or its commit raised: the item is then not stored, or (a failed `verify`)
        stored where it does not count. With a `deadline` (a time.monotonic() value), it raises
        InboxUnavailable or the database's timeout rather than wait for the database past it.
        """
        if self._pid != os.getpid():
            self._reset()
        me: _Waiting[Item, Result] = _Waiting(item, deadline)
        with self._lock:
            self._waiting.append(me)
            if not self._leading:
                self._leading = me.lead = True
        if not me.lead:
            me.woken.wait()  # until a leader has written this item, or made this thread the leader
        if me.lead:
            self._lead()
        if me.error is not None:
            raise me.error
        return me.result  # type: ignore[return-value]  # set whenever error is not

    def _lead(self) -> None:
        """Write a batch from the head of the queue (where this thread's own write is), then pass the lead on."""
        with self._lock:
            batch = self._waiting[: self._max_batch]
            del self._waiting[: self._max_batch]
        # The first in line has the earliest deadline, unless a write came without one.
        deadline = min((waiting.deadline for waiting in batch if waiting.deadline is not None), default=None)
        if self._order is not None:
            order = self._order
            batch.sort(key=lambda waiting: order(waiting.item))
        try:
            # The connection is checked out before the turn: the writers wait only for the writing.
            with self._engine.connect() as connection, self._turn(deadline):
                self._commit(connection, batch, deadline)
        except Exception as exc:  # no connection, or no turn in time: the whole batch is told
            self._fail(batch, exc)
        finally:
            with self._lock:
                if self._waiting:
                    self._waiting[0].lead = True
                    self._waiting[0].woken.set()
                else:
                    self._leading = False

    def _commit(self, connection: Connection, batch: list[_Waiting[Item, Result]], deadline: float | None) -> None:
        try:
            with connection.begin():
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise InboxUnavailable("the deadline passed before the inbox was free to write")
                    if self._bound is not None:
                        self._bound(connection, left)
                results = [self._write(connection, waiting.item) for waiting in batch]
            if self._verify is not None:
                self._verify()
        except Exception as exc:  # every error goes back to the threads that wait on it
            if len(batch) > 1 and not isinstance(exc, WHOLE_BATCH_FAILURES):
                log.warning("a batch of %d writes failed (%s); writing each alone", len(batch), type(exc).__name__)
                for waiting in batch:
                    self._commit(connection, [waiting], deadline)
                return
            self._fail(batch, exc)
            return
        for waiting, result in zip(batch, results, strict=True):
            waiting.result = result
            waiting.told = True
            waiting.woken.set()

    @staticmethod
    def _fail(batch: list[_Waiting[Item, Result]], exc: Exception) -> None:
        """Tell every write of `batch` not told yet that it failed with `exc`."""
        for waiting in batch:
            if not waiting.told:
                waiting.error = exc
                waiting.told = True
                waiting.woken.set()
