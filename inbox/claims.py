"""The workers' side of the inbox: claims and their leases, reservations, outcomes, and what is due.

A claim hands an event to one worker until its lease runs out; every later write of that worker
(`reserve`, `finish`, `retry_later`, `release`, `renew`) acts only while the row still carries the
claim's token, so a worker that lost its claim (its lease ran out, another took over) changes nothing.
These writes go through the bookkeeping engine, each in its turn among the service's writers, and
none is made once the inbox file was deleted or replaced under the service (InboxVanished).
"""

import functools
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Update, bindparam, or_, select, update
from sqlalchemy.exc import IntegrityError

import defaults
from clock import Clock
from inbox.database import Database
from inbox.records import Claim, ClaimLost, HeldBy, Reservation, Reserved, StoredEvent
from inbox.schema import Status, events, history

# The statements a worker runs for every event, built once with placeholders, so SQLAlchemy skips
# building each statement and its cache key on every call (measured in bench/results/before-after.md,
# round 2).
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
_RECORD = history.insert()


@functools.cache
def _claimed_update(columns: tuple[str, ...]) -> Update:
    """UPDATE these columns (to :new_<column>) of event :event_id, only while its claim_token is :token."""
    return (
        update(events)
        .where(events.c.id == bindparam("event_id"), events.c.claim_token == bindparam("token"))
        .values({name: bindparam(f"new_{name}", type_=events.c[name].type) for name in columns})
    )


class Claims:
    """Claims, leases and outcomes, fenced by the claim token (the base of `Inbox`)."""

    def __init__(self, database: Database, clock: Clock) -> None:
        self.database = database
        self.clock = clock

    # Processing -------------------------------------------------------------------------------

    @contextmanager
    def _bookkeeping_write(self) -> Iterator[Connection]:
        """A transaction of the workers' bookkeeping, in its turn; none once the database is no longer
        the one opened (InboxVanished), so a worker stops claiming instead of writing where nothing counts."""
        self.database.verify()
        with self.database.turn(), self.database.bookkeeping.begin() as conn:
            yield conn

    def claim(self, event_id: int, lease_seconds: int, now: datetime | None = None) -> Claim | None:
        """Take an event for processing, or None when it is not due or another worker holds it.

        One UPDATE with the whole condition in its WHERE clause, so two workers can never both win.
        """
        now = now or self.clock()
        token = uuid.uuid4().hex
        params = {
            "event_id": event_id,
            "now": now,
            "token": token,
            "lease_until": now + timedelta(seconds=lease_seconds),
        }
        with self._bookkeeping_write() as conn:
            row = conn.execute(_CLAIM, params).first()
            if row is None:
                return None
            event = StoredEvent.from_row(row)
            self._record(conn, event_id, now, "claimed", event.attempts)
        return Claim(event, token)

    def renew(self, claim: Claim, lease_seconds: int, now: datetime | None = None) -> bool:
        """Extend a claim's lease; False when the claim is no longer ours."""
        now = now or self.clock()
        return self._update_claimed(claim, lease_until=now + timedelta(seconds=lease_seconds), updated_at=now)

    def holds(self, claim: Claim) -> bool:
        """Whether the claim is still the worker's own (a read: no write, no lock)."""
        with self.database.bookkeeping.connect() as conn:
            token = conn.scalar(_CLAIM_TOKEN, {"event_id": claim.event.id})
        return token == claim.token

    def reserve(self, claim: Claim, kind: str, request_id: str, event_type: str) -> Reservation:
        """Make this event the one that processes `kind` result `request_id`, and record its type.

        The unique optimization_key makes the check and the write one step. When another live event
        holds the optimization, the answer names it (this event is its duplicate); a `dead` holder
        gives the optimization up, so a later message for it gets its chance.
        """
        key = f"{kind}:{request_id}"
        # One write in the usual case: the type and the optimization together.
        try:
            updated = self._update_claimed(claim, kind=kind, event_type=event_type, optimization_key=key)
            return Reserved() if updated else ClaimLost()
        except IntegrityError:
            pass
        # Another event holds it. The type anyway, so a duplicate also shows what it was a duplicate of.
        if not self._update_claimed(claim, kind=kind, event_type=event_type):
            return ClaimLost()
        with self._bookkeeping_write() as conn:
            released = conn.execute(
                update(events)
                .where(events.c.optimization_key == key, events.c.status == Status.DEAD)
                .values(optimization_key=None)
            ).rowcount
        if released:
            try:
                return Reserved() if self._update_claimed(claim, optimization_key=key) else ClaimLost()
            except IntegrityError:  # another message took it first
                pass
        with self.database.bookkeeping.connect() as conn:
            holder = conn.scalar(select(events.c.msg_id).where(events.c.optimization_key == key))
        # No holder, or this very event under a newer claim: another worker has taken over.
        return HeldBy(holder) if holder not in (None, claim.event.message_id) else ClaimLost()

    def finish(
        self,
        claim: Claim,
        status: Status,
        error: str | None = None,
        now: datetime | None = None,
        summary: str | None = None,
    ) -> bool:
        """Record a final status; False (and no change) when the claim is no longer ours."""
        now = now or self.clock()
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
        now = now or self.clock()
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
        now = now or self.clock()
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
        On PostgreSQL, rows another reconciler is handing out are skipped (FOR UPDATE SKIP LOCKED;
        SQLite has no row locks and ignores it). On SQLite two reconcilers may hand out the same
        event; that only queues it twice, and its claim lets one worker in.
        """
        now = now or self.clock()
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
