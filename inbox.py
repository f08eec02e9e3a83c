"""The inbox: one durable row per authentic delivery, and the only record of what is left to do.

The queue (Huey) only carries inbox ids and may lose them (a consumer killed mid-task loses its
task), so every decision is taken here, with single-statement compare-and-set updates:

- `add` inserts a delivery under a unique `msg_id` (the svix-id): a redelivery changes nothing.
  Concurrent deliveries share a transaction and its one durable commit (group_commit.py).
- `claim` hands an event to one worker for a lease; `finish`, `retry_later` and `reserve_optimization`
  only act while that claim is still the worker's own (the claim token is the fence).
- `due` lists what the reconciler must enqueue again: work never enqueued, retries that are due,
  and leases that ran out because their worker died.

Status flow: received → processing → done | retrying (→ processing …) | dead | duplicate.
Set at intake: received, ignored (not an OptiPick optimization type), invalid (authentic but unusable).
Every worker-side change also appends a row to `inbox_history` (claimed, done, retrying, dead,
duplicate, released, replayed), in the same transaction, so `python main.py show` can tell the story.
Times are UTC, taken from the caller's clock (`now=`), stored without a zone.
"""

import functools
import json
import logging
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    Update,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.types import TypeDecorator

import defaults
from config import ensure_parent_folder
from errors import ConfigError
from group_commit import GroupCommit
from writers_lock import WritersLock

log = logging.getLogger(__name__)


class Status(StrEnum):
    RECEIVED = "received"
    PROCESSING = "processing"
    RETRYING = "retrying"
    DONE = "done"
    IGNORED = "ignored"
    INVALID = "invalid"
    DEAD = "dead"
    DUPLICATE = "duplicate"


FINAL_STATUSES = frozenset({Status.DONE, Status.IGNORED, Status.INVALID, Status.DEAD, Status.DUPLICATE})

# The version of the tables below. Raise it with any change to them, together with the upgrade.
SCHEMA_VERSION = 1
SCHEMA_CREATE_LOOKS = 5


class UTCDateTime(TypeDecorator):
    """Aware UTC datetimes in Python, zone-less UTC in the database (the same on SQLite and PostgreSQL)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.astimezone(UTC).replace(tzinfo=None) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


metadata = MetaData()

events = Table(
    "inbox_events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("msg_id", String(255), nullable=False, unique=True),
    Column("status", String(16), nullable=False),
    # The event type as resolved at intake (or by the API), and the URL path's type, kept so that a
    # replay can resolve the type again with today's configuration.
    Column("event_type", String(255)),
    Column("path_type", String(255)),
    Column("kind", String(16)),
    Column("request_id", String(64)),
    # "<kind>:<request_id>", set on the one event that processes an optimization. A second message
    # for the same optimization (another svix-id) cannot take it and becomes a duplicate.
    Column("optimization_key", String(100), unique=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("claim_token", String(32)),
    Column("lease_until", UTCDateTime),
    Column("next_attempt_at", UTCDateTime),
    Column("last_error", Text),
    Column("result_summary", Text),  # the console summary of the fetched result, once done
    Column("body", LargeBinary, nullable=False),
    Column("headers", Text, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_inbox_events_status_due", "status", "next_attempt_at"),
    Index("ix_inbox_events_status_id", "status", "id"),
    Index("ix_inbox_events_received_at", "received_at"),
)

history = Table(
    "inbox_history",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("event_id", Integer, ForeignKey("inbox_events.id"), nullable=False, index=True),
    Column("at", UTCDateTime, nullable=False),
    Column("action", String(16), nullable=False),
    Column("attempt", Integer),
    Column("error", Text),
)

schema_info = Table(
    "inbox_schema",
    metadata,
    Column("id", Integer, primary_key=True),  # always 1: one row
    Column("version", Integer, nullable=False),
)


# The statements a worker runs for every event, built once with placeholders: SQLAlchemy then skips
# building each statement and its cache key on every call, a fifth of a busy worker's CPU
# (bench/results/before-after.md).
_CLAIM = (
    update(events)
    .where(
        events.c.id == bindparam("event_id"),
        or_(
            events.c.status == Status.RECEIVED,
            (events.c.status == Status.RETRYING) & (events.c.next_attempt_at <= bindparam("now")),
            (events.c.status == Status.PROCESSING) & (events.c.lease_until < bindparam("now")),
        ),
    )
    .values(
        status=Status.PROCESSING,
        claim_token=bindparam("token"),
        lease_until=bindparam("lease_until", type_=events.c.lease_until.type),
        attempts=events.c.attempts + 1,
        updated_at=bindparam("now", type_=events.c.updated_at.type),
    )
    .returning(*events.c)
)
_CLAIM_TOKEN = select(events.c.claim_token).where(events.c.id == bindparam("event_id"))
_RECORD = insert(history)


@functools.cache
def _claimed_update(columns: tuple[str, ...]) -> Update:
    """UPDATE these columns (to :new_<column>) of event :event_id, only while its claim_token is :token."""
    return (
        update(events)
        .where(events.c.id == bindparam("event_id"), events.c.claim_token == bindparam("token"))
        .values({name: bindparam(f"new_{name}", type_=events.c[name].type) for name in columns})
    )


@dataclass(frozen=True)
class StoredEvent:
    id: int
    msg_id: str
    status: Status
    event_type: str | None
    path_type: str | None
    kind: str | None
    request_id: str | None
    attempts: int
    claim_token: str | None
    lease_until: datetime | None
    next_attempt_at: datetime | None
    last_error: str | None
    result_summary: str | None
    body: bytes
    headers: dict[str, str]
    received_at: datetime
    updated_at: datetime

    @classmethod
    def new(cls, event_id: int, values: Mapping[str, Any]) -> "StoredEvent":
        """The event just inserted with `values` (Inbox.add's), as `from_row` would read it back."""
        return cls(
            id=event_id,
            msg_id=values["msg_id"],
            status=Status(values["status"]),
            event_type=values["event_type"],
            path_type=values["path_type"],
            kind=values["kind"],
            request_id=values["request_id"],
            attempts=values["attempts"],
            claim_token=None,
            lease_until=None,
            next_attempt_at=values["next_attempt_at"].astimezone(UTC),
            last_error=values["last_error"],
            result_summary=None,
            body=values["body"],
            headers=json.loads(values["headers"]),
            received_at=values["received_at"].astimezone(UTC),
            updated_at=values["updated_at"].astimezone(UTC),
        )

    @classmethod
    def from_row(cls, row: Any) -> "StoredEvent":
        values = dict(row._mapping)
        values.pop("optimization_key")
        values["status"] = Status(values["status"])
        values["headers"] = json.loads(values["headers"])
        return cls(**values)


@dataclass(frozen=True)
class HistoryEntry:
    at: datetime
    action: str
    attempt: int | None
    error: str | None


@dataclass(frozen=True)
class NewDelivery:
    """An authentic delivery, as intake hands it to the inbox."""

    msg_id: str
    status: Status
    body: bytes
    headers: Mapping[str, str]
    event_type: str | None = None
    path_type: str | None = None
    kind: str | None = None
    request_id: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Added:
    """The outcome of `Inbox.add`: the stored row, and whether this call created it."""

    event: StoredEvent
    created: bool


@dataclass(frozen=True)
class Claim:
    """A worker's hold on an event until `event.lease_until`."""

    event: StoredEvent
    token: str


def utcnow() -> datetime:
    return datetime.now(UTC)


def create_db_engine(url: str, synchronous: str = "FULL") -> Engine:
    """An engine for DATABASE_URL. SQLite runs in WAL mode with the given `synchronous` level."""
    if make_url(url).get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url)  # a local file: no connection to go stale, so no ping per checkout
    if engine.url.database and engine.url.database != ":memory:":
        ensure_parent_folder("DATABASE_URL", Path(engine.url.database))

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute(f"PRAGMA busy_timeout={defaults.SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    return engine


def writers_lock(engine: Engine) -> WritersLock | None:
    """The lock on which a SQLite inbox's writers take turns (writers_lock.py): `<database>-writers.lock`.
    None where there is no file to lock, and on PostgreSQL, whose writers do not exclude each other."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    return WritersLock(Path(f"{database}-writers.lock"))


class Inbox:
    def __init__(self, engine: Engine, bookkeeping: Engine | None = None) -> None:
        """`engine` stores deliveries and serves the commands; `bookkeeping` (the same by default)
        records the workers' progress: claims, leases, outcomes, history."""
        self.engine = engine
        self._bookkeeping = bookkeeping or engine
        self._insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        # Built once: the request path runs it for every delivery. A new row's other values are the
        # ones just written, so only its id comes back: reading the whole row back (its times parsed
        # from text) would be work done while the other writers wait for their turn.
        self._add = self._insert(events).on_conflict_do_nothing(index_elements=["msg_id"]).returning(events.c.id)
        self._writers = writers_lock(engine)
        self._adds: GroupCommit[dict[str, Any], tuple[int, StoredEvent | None]] = GroupCommit(
            engine, self._add_one, turn=self._turn, order=lambda values: values["msg_id"]
        )

    @classmethod
    def open(cls, url: str) -> "Inbox":
        """Connect, create the tables on first use, and refuse a database of another schema version.

        On SQLite an acknowledged delivery is committed with synchronous=FULL, so it survives a power
        cut (WAL with NORMAL can lose the last commits). The workers' bookkeeping uses NORMAL: a power
        cut can at worst undo the last few claims or outcomes, which makes those events run again,
        as a crash would, and saves an fsync on each of the four writes that process an event.
        """
        bookkeeping = create_db_engine(url, synchronous="NORMAL") if url.startswith("sqlite") else None
        inbox = cls(create_db_engine(url), bookkeeping)
        # Several processes starting at once (gunicorn's workers) race between "is the table there?"
        # and "create it" for each table; a loser finds more tables there at every look, so a few
        # looks settle it. (PostgreSQL reports the race as a unique violation on its catalog, or as
        # DuplicateTable: a ProgrammingError.)
        for look in range(1, SCHEMA_CREATE_LOOKS + 1):
            try:
                metadata.create_all(inbox.engine)
                break
            except (OperationalError, IntegrityError, ProgrammingError):
                if look == SCHEMA_CREATE_LOOKS:
                    raise
                time.sleep(0.05 * look)
        inbox.check_schema()
        return inbox

    def check_schema(self) -> None:
        """Record the schema version in a new database; raise ConfigError when it differs."""
        with self.engine.begin() as conn:
            conn.execute(
                self._insert(schema_info)
                .values(id=1, version=SCHEMA_VERSION)
                .on_conflict_do_nothing(index_elements=["id"])
            )
            version = conn.scalar(select(schema_info.c.version).where(schema_info.c.id == 1))
        if version != SCHEMA_VERSION:
            raise ConfigError(
                f"DATABASE_URL holds an inbox of schema version {version}, but this version of "
                f"optipick-webhooks needs version {SCHEMA_VERSION}: run the matching release, or point "
                "DATABASE_URL at a new database"
            )

    def __repr__(self) -> str:
        return f"Inbox({self.engine.url.render_as_string(hide_password=True)!r})"

    # Intake -----------------------------------------------------------------------------------

    def add(self, delivery: NewDelivery, now: datetime | None = None) -> Added:
        """Store a delivery unless its msg_id is already stored (an atomic insert-or-ignore).

        Returns once the row is committed durably (with other deliveries that arrived meanwhile), with
        the stored row either way, so a redelivery gets the answer the first delivery got.
        """
        now = now or utcnow()
        values = {
            "msg_id": delivery.msg_id,
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
        event_id, stored = self._adds.submit(values)
        if stored is not None:
            return Added(stored, created=False)
        # Built here, after the commit, rather than in the writers' turn.
        return Added(StoredEvent.new(event_id, values), created=True)

    def _add_one(self, conn: Connection, values: dict[str, Any]) -> tuple[int, StoredEvent | None]:
        """Insert unless the msg_id is stored: the new row's id and None, or the stored row's id and the row."""
        event_id = conn.execute(self._add, values).scalar()
        if event_id is not None:
            return event_id, None
        row = conn.execute(select(events).where(events.c.msg_id == values["msg_id"])).one()
        return row.id, StoredEvent.from_row(row)

    def close(self) -> None:
        if self._writers is not None:
            self._writers.close()
        self.engine.dispose()
        self._bookkeeping.dispose()

    def _turn(self) -> AbstractContextManager[None]:
        """A write's turn at the database among the service's other writers (SQLite only)."""
        return nullcontext() if self._writers is None else self._writers.turn()

    @contextmanager
    def _bookkeeping_write(self) -> Iterator[Connection]:
        """A transaction of the workers' bookkeeping, in its turn."""
        with self._turn(), self._bookkeeping.begin() as conn:
            yield conn

    # Processing -------------------------------------------------------------------------------

    def claim(self, event_id: int, lease_seconds: int, now: datetime | None = None) -> Claim | None:
        """Take an event for processing, or None when it is not due or another worker holds it.

        One UPDATE with the whole condition in its WHERE clause, so two workers can never both win.
        """
        now = now or utcnow()
        params = {
            "event_id": event_id,
            "now": now,
            "token": uuid.uuid4().hex,
            "lease_until": now + timedelta(seconds=lease_seconds),
        }
        with self._bookkeeping_write() as conn:
            row = conn.execute(_CLAIM, params).first()
            if row is None:
                return None
            event = StoredEvent.from_row(row)
            self._record(conn, event_id, now, "claimed", event.attempts)
        return Claim(event, params["token"])

    def renew(self, claim: Claim, lease_seconds: int, now: datetime | None = None) -> bool:
        """Extend a claim's lease; False when the claim is no longer ours."""
        now = now or utcnow()
        return self._update_claimed(claim, lease_until=now + timedelta(seconds=lease_seconds), updated_at=now)

    def holds(self, claim: Claim) -> bool:
        """Whether the claim is still the worker's own (a read: no write, no lock)."""
        with self._bookkeeping.connect() as conn:
            token = conn.scalar(_CLAIM_TOKEN, {"event_id": claim.event.id})
        return token == claim.token

    def reserve_optimization(self, claim: Claim, kind: str, request_id: str, event_type: str) -> bool:
        """Make this event the one that processes `kind` result `request_id`.

        False when another live event already holds that optimization (this one is a duplicate) or
        the claim is no longer ours. The unique optimization_key makes the check and the write one
        step. A `dead` holder gives the optimization up, so a later message for it gets its chance.
        """
        key = f"{kind}:{request_id}"
        # One write in the usual case: the type and the optimization together.
        try:
            return self._update_claimed(claim, kind=kind, event_type=event_type, optimization_key=key)
        except IntegrityError:
            pass
        # Another event holds it. The type anyway, so a duplicate also shows what it was a duplicate of.
        if not self._update_claimed(claim, kind=kind, event_type=event_type):
            return False
        with self._bookkeeping_write() as conn:
            released = conn.execute(
                update(events)
                .where(events.c.optimization_key == key, events.c.status == Status.DEAD)
                .values(optimization_key=None)
            ).rowcount
        if not released:
            return False
        try:
            return self._update_claimed(claim, optimization_key=key)
        except IntegrityError:  # another message took it first
            return False

    def holder_of(self, kind: str, request_id: str) -> str | None:
        """The msg_id of the event that holds an optimization, if any."""
        with self._bookkeeping.connect() as conn:
            return conn.scalar(select(events.c.msg_id).where(events.c.optimization_key == f"{kind}:{request_id}"))

    def finish(
        self,
        claim: Claim,
        status: Status,
        error: str | None = None,
        now: datetime | None = None,
        summary: str | None = None,
    ) -> bool:
        """Record a final status; False (and no change) when the claim is no longer ours."""
        now = now or utcnow()
        return self._update_claimed(
            claim,
            record=(now, str(status), error),
            status=status,
            last_error=error,
            result_summary=summary,
            claim_token=None,
            lease_until=None,
            next_attempt_at=None,
            updated_at=now,
        )

    def retry_later(self, claim: Claim, error: str, at: datetime, now: datetime | None = None) -> bool:
        """Keep the intent to retry in the row, so it survives a lost scheduled task."""
        now = now or utcnow()
        return self._update_claimed(
            claim,
            record=(now, Status.RETRYING.value, error),
            status=Status.RETRYING,
            last_error=error,
            claim_token=None,
            lease_until=None,
            next_attempt_at=at,
            updated_at=now,
        )

    def release(self, claim: Claim, now: datetime | None = None) -> bool:
        """Give back an event a stopping worker could not finish: due at once, attempt not counted."""
        now = now or utcnow()
        return self._update_claimed(
            claim,
            record=(now, "released", "the worker stopped before the attempt finished"),
            status=Status.RETRYING,
            attempts=claim.event.attempts - 1,  # as the claim left it: nobody else writes while it holds
            claim_token=None,
            lease_until=None,
            next_attempt_at=now,
            updated_at=now,
        )

    def _update_claimed(
        self, claim: Claim, record: tuple[datetime, str, str | None] | None = None, **values: Any
    ) -> bool:
        """Apply `values` only while the claim is still ours, appending `record` to the history if so."""
        params = {"event_id": claim.event.id, "token": claim.token, **{f"new_{k}": v for k, v in values.items()}}
        with self._bookkeeping_write() as conn:
            updated = conn.execute(_claimed_update(tuple(sorted(values))), params).rowcount
            if updated and record is not None:
                at, action, error = record
                self._record(conn, claim.event.id, at, action, claim.event.attempts, error)
        return bool(updated)

    @staticmethod
    def _record(
        conn: Connection, event_id: int, at: datetime, action: str, attempt: int | None = None, error: str | None = None
    ) -> None:
        conn.execute(_RECORD, {"event_id": event_id, "at": at, "action": action, "attempt": attempt, "error": error})

    # Reconciling ------------------------------------------------------------------------------

    def due(self, now: datetime | None = None, limit: int = defaults.RECONCILE_BATCH) -> list[int]:
        """Ids of events the reconciler must enqueue again, oldest first, pushing each one's next
        look `RECONCILE_AFTER_SECONDS` ahead so a backlog is not enqueued over and over.

        Due are: `received` events not claimed in time (their task was lost, or never enqueued),
        `retrying` events whose time has come, and `processing` events whose lease ran out.
        On PostgreSQL, rows another reconciler is handing out are skipped (FOR UPDATE SKIP LOCKED). On
        SQLite two reconcilers may hand out the same event; that only queues it twice, and its claim
        lets one worker in.
        """
        now = now or utcnow()
        waiting = events.c.status.in_([Status.RECEIVED, Status.RETRYING]) & (events.c.next_attempt_at <= now)
        abandoned = (events.c.status == Status.PROCESSING) & (events.c.lease_until < now)
        query = (
            select(events.c.id)
            .where(or_(waiting, abandoned))
            .order_by(events.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        with self._bookkeeping_write() as conn:
            ids = list(conn.scalars(query))
            if ids:
                later = now + timedelta(seconds=defaults.RECONCILE_AFTER_SECONDS)
                conn.execute(
                    update(events)
                    .where(events.c.id.in_(ids), events.c.status == Status.RECEIVED)
                    .values(next_attempt_at=later)
                )
        return ids

    # Operating --------------------------------------------------------------------------------

    def replay(self, event_id: int, delivery: NewDelivery, now: datetime | None = None) -> bool:
        """Put a stored event back to be processed, with its type and status resolved again
        (`delivery`, from intake with today's configuration). A fresh start: attempts from zero.

        False when a worker holds the event right now (its lease has not run out).
        """
        now = now or utcnow()
        held = (events.c.status == Status.PROCESSING) & (events.c.lease_until >= now)
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
                    next_attempt_at=now + timedelta(seconds=defaults.RECONCILE_AFTER_SECONDS)
                    if delivery.status is Status.RECEIVED
                    else None,
                    updated_at=now,
                )
            ).rowcount
            if updated:
                self._record(conn, event_id, now, "replayed", None, f"replayed as {delivery.status}")
        return bool(updated)

    def find(
        self,
        since: datetime,
        until: datetime | None = None,
        statuses: Sequence[Status] = (),
        limit: int | None = None,
    ) -> list[StoredEvent]:
        """Events received in [since, until), oldest first, optionally only in these statuses."""
        query = select(events).where(events.c.received_at >= since).order_by(events.c.id)
        if until is not None:
            query = query.where(events.c.received_at < until)
        if statuses:
            query = query.where(events.c.status.in_(list(statuses)))
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [StoredEvent.from_row(row) for row in conn.execute(query)]

    def prune(self, before: datetime, statuses: Sequence[Status]) -> int:
        """Delete events in these statuses received before `before`, with their history."""
        doomed = select(events.c.id).where(events.c.received_at < before, events.c.status.in_(list(statuses)))
        with self.engine.begin() as conn:
            conn.execute(delete(history).where(history.c.event_id.in_(doomed)))
            return conn.execute(
                delete(events).where(events.c.received_at < before, events.c.status.in_(list(statuses)))
            ).rowcount

    def history_of(self, event_id: int) -> list[HistoryEntry]:
        query = select(history).where(history.c.event_id == event_id).order_by(history.c.id)
        with self.engine.connect() as conn:
            return [HistoryEntry(row.at, row.action, row.attempt, row.error) for row in conn.execute(query)]

    # Reading ----------------------------------------------------------------------------------

    def get(self, event_id: int) -> StoredEvent | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(events).where(events.c.id == event_id)).first()
        return StoredEvent.from_row(row) if row else None

    def by_msg_id(self, msg_id: str) -> StoredEvent | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(events).where(events.c.msg_id == msg_id)).first()
        return StoredEvent.from_row(row) if row else None

    def latest(self, status: Status | None = None, limit: int = 50) -> list[StoredEvent]:
        """Stored events, newest first."""
        query = select(events).order_by(events.c.id.desc()).limit(limit)
        if status is not None:
            query = query.where(events.c.status == status)
        with self.engine.connect() as conn:
            return [StoredEvent.from_row(row) for row in conn.execute(query)]

    def count(self, status: Status | None = None) -> int:
        query = select(func.count()).select_from(events)
        if status is not None:
            query = query.where(events.c.status == status)
        with self.engine.connect() as conn:
            return conn.scalar(query) or 0

    def ping(self) -> None:
        """Raise unless the database answers and the inbox table is there."""
        with self.engine.connect() as conn:
            conn.execute(select(events.c.id).limit(1)).all()
