"""The Inbox: one durable row per authentic delivery, and the only record of what is left to do.

The queue (Huey) only carries inbox ids and may lose them (a consumer killed mid-task loses its
task), so every decision is taken here, with single-statement compare-and-set updates:

- `add` inserts a delivery under a unique message id (the svix-id): a redelivery changes nothing.
  Concurrent deliveries share a transaction and its one durable commit (group_commit.py), which
  waits for the database no later than the delivery's deadline.
- `check` says whether a delivery could be stored now, for GET /healthz.
- `claim` hands an event to one worker for a lease; `reserve`, `finish` and `retry_later` only act
  while that claim is still the worker's own (the claim token is the fence).
- `due` lists what the reconciler must enqueue again: work never enqueued, retries that are due,
  and leases that ran out because their worker died.
"""

import json
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, func, select, update
from sqlalchemy.exc import DataError, IntegrityError, SQLAlchemyError

import defaults
from clock import Clock, utcnow
from errors import ConfigError, InboxUnavailable
from inbox.claims import Claims
from inbox.database import Database, describe_error, open_database
from inbox.group_commit import GroupCommit
from inbox.records import Added, HistoryEntry, NewDelivery, StoredEvent
from inbox.schema import SCHEMA_VERSION, Status, events, history, metadata, schema_info


class Inbox(Claims):
    """Owns every stored delivery and every decision about it: who processes it, when, and how it ended.

    The workers' side (claims, leases, outcomes, the reconciler's `due`) is in claims.py.
    """

    def __init__(self, database: Database, clock: Clock = utcnow) -> None:
        super().__init__(database, clock)
        # Built once: the request path runs it for every delivery. A new row's other values are the
        # ones just written, so only its id comes back: reading the whole row back (its times parsed
        # from text) would be work done while the other writers wait for their turn.
        self._add = database.insert(events).on_conflict_do_nothing(index_elements=["msg_id"]).returning(events.c.id)
        self._adds: GroupCommit[dict[str, Any], tuple[int, StoredEvent | None]] = GroupCommit(
            database.engine,
            self._add_one,
            turn=database.turn,
            order=lambda values: values["msg_id"],
            bound=database.bound,
            verify=database.verify,
        )
        # Why the last delivery could not be stored, until one is (or a trial write in `check` succeeds).
        self.write_failure: str | None = None

    @classmethod
    def open(cls, url: str, clock: Clock = utcnow) -> "Inbox":
        """Connect, create the tables on first use, and refuse a database of another schema version."""
        inbox = cls(open_database(url), clock)
        inbox.database.create_tables(metadata)
        inbox.check_schema()
        return inbox

    @property
    def engine(self) -> Any:
        """The engine that stores deliveries and serves the commands."""
        return self.database.engine

    def check_schema(self) -> None:
        """Record the schema version in a new database; raise ConfigError when it differs.

        Only a new database is written to: a process starting (a gunicorn worker booting) while
        another program holds the inbox for writing reads the version and starts all the same.
        """
        version_now = select(schema_info.c.version).where(schema_info.c.id == 1)
        with self.engine.connect() as conn:
            version = conn.scalar(version_now)
        if version is None:
            with self.engine.begin() as conn:
                conn.execute(
                    self.database.insert(schema_info)
                    .values(id=1, version=SCHEMA_VERSION)
                    .on_conflict_do_nothing(index_elements=["id"])
                )
                version = conn.scalar(version_now)
        if version != SCHEMA_VERSION:
            raise ConfigError(
                f"DATABASE_URL holds an inbox of schema version {version}, but this version of "
                f"optipick-webhooks needs version {SCHEMA_VERSION}: run the matching release, or point "
                "DATABASE_URL at a new database"
            )

    def close(self) -> None:
        self.database.close()

    def __repr__(self) -> str:
        return f"Inbox({self.database!r})"

    # Intake -----------------------------------------------------------------------------------

    def add(self, delivery: NewDelivery, now: datetime | None = None, deadline: float | None = None) -> Added:
        """Store a delivery unless its message id is already stored (an atomic insert-or-ignore).

        Returns once the row is committed durably (with other deliveries that arrived meanwhile), with
        the stored row either way, so a redelivery gets the answer the first delivery got. With a
        `deadline` (time.monotonic()), raises rather than wait for the database past it: a
        SQLAlchemyError or InboxUnavailable means not stored, or stored where it may not count.
        """
        now = now or self.clock()
        values = {
            "msg_id": delivery.message_id,
            "status": delivery.status,
            "event_type": delivery.event_type,
            "path_type": delivery.path_type,
            "kind": delivery.kind,
            "request_id": delivery.request_id,
            "attempts": 0,
            "last_error": delivery.error,
            "body": delivery.body,
            "headers": json.dumps(dict(delivery.headers), sort_keys=True),
            "received_at": now,
            "updated_at": now,
            # Until a worker claims it, the reconciler leaves a new event to the task enqueued with it.
            "next_attempt_at": now + timedelta(seconds=defaults.RECONCILE_AFTER_SECONDS),
        }
        try:
            event_id, stored = self._adds.submit(values, deadline)
        except (SQLAlchemyError, InboxUnavailable) as exc:
            if not isinstance(exc, IntegrityError | DataError):  # the database's fault, not this delivery's
                self.write_failure = describe_error(exc)
            raise
        if self.write_failure is not None:
            self.write_failure = None
        if stored is not None:
            return Added(stored, created=False)
        # Built here, after the commit, rather than in the writers' turn.
        return Added(StoredEvent.new(event_id, values), created=True)

    def _add_one(self, conn: Connection, values: dict[str, Any]) -> tuple[int, StoredEvent | None]:
        """Insert unless the message id is stored: the new row's id and None, or the stored row's id and the row."""
        event_id = conn.execute(self._add, values).scalar()
        if event_id is not None:
            return event_id, None
        row = conn.execute(select(events).where(events.c.msg_id == values["msg_id"])).one()
        return row.id, StoredEvent.from_row(row)

    # Operating --------------------------------------------------------------------------------

    def replay(self, event_id: int, delivery: NewDelivery, now: datetime | None = None) -> bool:
        """Put a stored event back to be processed, with its type and status resolved again
        (`delivery`, from intake with today's configuration). A fresh start: attempts from zero.

        False when a worker holds the event right now (its lease has not run out).
        """
        now = now or self.clock()
        held = (events.c.status == Status.PROCESSING) & (events.c.lease_until >= now)
        due = now + timedelta(seconds=defaults.RECONCILE_AFTER_SECONDS) if delivery.status is Status.RECEIVED else None
        with self.engine.begin() as conn:
            updated = conn.execute(
                update(events)
                .where(events.c.id == event_id, ~held)
                .values(
                    status=delivery.status,
                    event_type=delivery.event_type,
                    kind=delivery.kind,
                    request_id=delivery.request_id,
                    last_error=delivery.error,
                    result_summary=None,
                    attempts=0,
                    claim_token=None,
                    lease_until=None,
                    next_attempt_at=due,
                    updated_at=now,
                )
            ).rowcount
            if updated:
                self._record(conn, event_id, now, "replayed", None, f"replayed as {delivery.status}")
        return bool(updated)

    def prune(self, before: datetime, statuses: Sequence[Status]) -> int:
        """Delete events in these statuses received before `before`, with their history."""
        doomed = select(events.c.id).where(events.c.received_at < before, events.c.status.in_(list(statuses)))
        with self.engine.begin() as conn:
            conn.execute(delete(history).where(history.c.event_id.in_(doomed)))
            deleted = conn.execute(
                delete(events).where(events.c.received_at < before, events.c.status.in_(list(statuses)))
            )
            return int(deleted.rowcount)

    # Reading ----------------------------------------------------------------------------------

    def find(
        self, since: datetime, until: datetime | None = None, statuses: Sequence[Status] = (), limit: int | None = None
    ) -> list[StoredEvent]:
        """Events received in [since, until), oldest first, optionally only in these statuses."""
        query = select(events).where(events.c.received_at >= since).order_by(events.c.id)
        if until is not None:
            query = query.where(events.c.received_at < until)
        if statuses:
            query = query.where(events.c.status.in_(list(statuses)))
        if limit is not None:
            query = query.limit(limit)
        return self._events(query)

    def latest(self, status: Status | None = None, limit: int = 50) -> list[StoredEvent]:
        """Stored events, newest first."""
        query = select(events).order_by(events.c.id.desc()).limit(limit)
        if status is not None:
            query = query.where(events.c.status == status)
        return self._events(query)

    def get(self, event_id: int) -> StoredEvent | None:
        found = self._events(select(events).where(events.c.id == event_id))
        return found[0] if found else None

    def by_message_id(self, message_id: str) -> StoredEvent | None:
        found = self._events(select(events).where(events.c.msg_id == message_id))
        return found[0] if found else None

    def history_of(self, event_id: int) -> list[HistoryEntry]:
        query = select(history).where(history.c.event_id == event_id).order_by(history.c.id)
        with self.engine.connect() as conn:
            return [HistoryEntry(row.at, row.action, row.attempt, row.error) for row in conn.execute(query)]

    def count(self, status: Status | None = None) -> int:
        query = select(func.count()).select_from(events)
        if status is not None:
            query = query.where(events.c.status == status)
        with self.engine.connect() as conn:
            return int(conn.scalar(query) or 0)

    def ping(self) -> None:
        """Raise unless the database answers and the inbox table is there."""
        with self.engine.connect() as conn:
            conn.execute(select(events.c.id).limit(1)).all()

    def check(self, deadline: float) -> None:
        """Raise (SQLAlchemyError, InboxUnavailable) unless a delivery could be stored now, waiting for
        the database no later than `deadline` (time.monotonic()).

        The file must still be the one opened, and the inbox table must answer. After a delivery
        could not be stored, only a write shows the way is clear again (a lock released, a disk with
        room, a file writable): a committed one that changes nothing, taking its turn like a delivery.
        """
        self.database.verify()
        with self.engine.connect() as conn:
            if self.write_failure is None:
                with conn.begin():
                    self.database.bound(conn, max(0.001, deadline - time.monotonic()))
                    conn.execute(select(events.c.id).limit(1)).all()
                return
            with self.database.turn(deadline), conn.begin():
                self.database.bound(conn, max(0.001, deadline - time.monotonic()))
                conn.execute(update(schema_info).where(schema_info.c.id == 1).values(version=schema_info.c.version))
        self.database.verify()
        self.write_failure = None

    def _events(self, query: Any) -> list[StoredEvent]:
        with self.engine.connect() as conn:
            return [StoredEvent.from_row(row) for row in conn.execute(query)]
