"""The worker's side: claim an event, fetch its result, hand it to the handlers, record the outcome.

Runs in a Huey worker, never on the request path. Nothing here takes the worker down: every
failure, the API's or a handler's or a bug's, ends in a recorded status (`done`, `retrying`,
`dead` or `duplicate`) with the error kept in `last_error`. The reconciler (`reconcile`) puts
back into the queue whatever the inbox says is due, because the queue itself can lose work.
An error can quote the API or an exception, so it is stored and logged printable (printable.py).

A failure of the inbox itself (locked, disk full, connection lost) cannot be recorded in it: it is
logged in one line naming the database error, and the event is left as the inbox has it, to run again
once its lease runs out. Once the inbox file was deleted or replaced (InboxVanished, said once, loudly,
by the inbox), nothing is claimed at all.
"""

import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError

import defaults
from clock import Clock, utcnow
from errors import (
    AuthenticationError,
    HandlerError,
    InboxUnavailable,
    InboxVanished,
    OptiPickError,
    RateLimited,
    ResultNotFound,
    UnreadableResult,
)
from event_types import Event, EventType
from handlers.registry import Registry
from inbox import Claim, ClaimLost, HeldBy, Inbox, Status, describe_error
from optipick_client import OptiPickClient
from printable import printable
from results import Result
from summaries import summary
from work_queue import Enqueue

log = logging.getLogger(__name__)

ERROR_LIMIT = 2000  # characters of an error kept in last_error and logged
QUOTED_LIMIT = 500  # characters of a text from outside (the API's error, an exception's) within an error


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = defaults.MAX_ATTEMPTS
    delays: tuple[int, ...] = defaults.RETRY_DELAYS
    not_found_max_attempts: int = defaults.NOT_FOUND_MAX_ATTEMPTS
    unreadable_max_attempts: int = defaults.UNREADABLE_MAX_ATTEMPTS

    def delay_after(self, attempt: int) -> int:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        return self.delays[min(attempt, len(self.delays)) - 1]


class Processor:
    """Owns what happens to an event after its acknowledgement: each attempt, its retries, and its end.

    Its methods take `now` (process as at that instant, for tests); without it, each step reads the clock.
    """

    def __init__(
        self,
        inbox: Inbox,
        client: OptiPickClient,
        registry: Registry,
        enqueue: Enqueue,
        *,
        policy: RetryPolicy = RetryPolicy(),
        lease_seconds: int = defaults.LEASE_SECONDS,
        clock: Clock = utcnow,
    ) -> None:
        self.inbox = inbox
        self.client = client
        self.registry = registry
        self.enqueue = enqueue
        self.policy = policy
        self.lease_seconds = lease_seconds
        self.clock = clock
        # Claims being worked on in this process, so a stopping worker can give back what it could
        # not finish instead of leaving it locked until the lease runs out.
        self._active: dict[str, Claim] = {}
        self._active_lock = threading.Lock()

    def process(self, event_id: int, now: datetime | None = None) -> Status | None:
        """Process one event if it is due and nobody else holds it; return the status it was left in
        (None when there was nothing to do, or the claim was lost to another worker meanwhile)."""
        try:
            claim = self.inbox.claim(event_id, self.lease_seconds, now)
        except InboxVanished:  # the inbox has said why, once: claim nothing until a restart
            return None
        except (SQLAlchemyError, InboxUnavailable) as exc:  # down or busy: the row stays due for later
            log.warning(
                "could not claim event %s (%s); the reconciler will offer it again", event_id, describe_error(exc)
            )
            return None
        if claim is None:
            log.debug("event %s is not due or is held by another worker", event_id)
            return None
        with self._active_lock:
            self._active[claim.token] = claim
        try:
            return self._attempt(claim, now)
        except InboxVanished:
            return None
        except (SQLAlchemyError, InboxUnavailable) as exc:  # nothing can be recorded: the lease hands it on
            log.warning(
                "%s: the inbox failed (%s); the event runs again once its lease runs out",
                claim.event.message_id,
                describe_error(exc),
            )
            return None
        finally:
            with self._active_lock:
                self._active.pop(claim.token, None)

    def release_active(self, now: datetime | None = None) -> int:
        """Give back every event this process is still working on (at shutdown, after the grace
        period); each becomes due at once for the next worker. Returns how many were given back."""
        with self._active_lock:
            claims = list(self._active.values())
        released = sum(self._release(claim, now) for claim in claims)
        if released:
            log.warning("gave back %d event(s) cut off by the shutdown; they run again on the next start", released)
        return released

    def _release(self, claim: Claim, now: datetime | None) -> bool:
        try:
            return self.inbox.release(claim, now)
        except (SQLAlchemyError, InboxUnavailable) as exc:
            log.warning(
                "%s: could not give it back (%s); its lease hands it on", claim.event.message_id, describe_error(exc)
            )
            return False

    def _attempt(self, claim: Claim, now: datetime | None) -> Status | None:
        """One attempt at a claimed event, every failure turned into the status it deserves."""
        attempts = claim.event.attempts
        if attempts > self.policy.max_attempts:
            # Attempts are counted when claimed, so this event's last attempts were cut off (a crash
            # or a kill) before they could record an outcome. Stop here instead of looping forever.
            reason = claim.event.last_error or "every attempt was interrupted before it finished"
            return self._finish(claim, Status.DEAD, f"gave up after {attempts - 1} attempts: {reason}", now)
        try:
            return self._fetch_and_handle(claim, now)
        except AuthenticationError as exc:
            return self._finish(claim, Status.DEAD, str(exc), now)
        except ResultNotFound as exc:
            return self._retry(claim, str(exc), now, give_up_after=self.policy.not_found_max_attempts)
        except UnreadableResult as exc:
            return self._retry(claim, str(exc), now, give_up_after=self.policy.unreadable_max_attempts)
        except RateLimited as exc:
            return self._retry(claim, str(exc), now, at_least=exc.retry_after or 0)
        except (OptiPickError, HandlerError) as exc:
            return self._retry(claim, str(exc), now)
        except (SQLAlchemyError, InboxUnavailable):  # the inbox failed: recording a retry would fail too
            raise
        except Exception as exc:  # a bug, here or in a library: keep the worker alive and the event safe
            log.exception("unexpected error while processing %s", claim.event.message_id)
            return self._retry(
                claim, f"unexpected error: {type(exc).__name__}: {printable(exc, limit=QUOTED_LIMIT)}", now
            )

    def _fetch_and_handle(self, claim: Claim, now: datetime | None) -> Status | None:
        """Learn the type, reserve the optimization, fetch the result, run the handlers, record it done."""
        stored = claim.event
        assert stored.request_id is not None  # intake stores only events with a usable request id as received
        event_type, result = self._event_type(stored.message_id, stored.event_type, stored.request_id)
        match self.inbox.reserve(claim, event_type.kind, stored.request_id, str(event_type)):
            case HeldBy(holder):
                error = f"{event_type.kind} {stored.request_id} is handled by {holder}"
                return self._finish(claim, Status.DUPLICATE, error, now)
            case ClaimLost():
                log.warning("%s: lost its claim to another worker; leaving it", stored.message_id)
                return None
        result = result or self.client.fetch(event_type.kind, stored.request_id)
        if not self._still_ours(claim, now or self.clock()):
            log.warning("%s: lost its claim while fetching; leaving it to the new owner", stored.message_id)
            return None
        event = Event.announced(claim.event, event_type, result)
        handled = self.registry.dispatch(event, result)
        return self._done(claim, event, result, handled, now)

    def _event_type(self, message_id: str, stored_type: str | None, request_id: str) -> tuple[EventType, Result | None]:
        """The type stored at intake; when nothing named it, the API tells, and its result comes along."""
        event_type = EventType.parse(stored_type) if stored_type else None
        if event_type is not None:
            return event_type, None
        result = self.client.detect(request_id)
        log.info("%s: detected %s from the API", message_id, result.kind)
        return EventType(result.kind), result

    def _still_ours(self, claim: Claim, now: datetime) -> bool:
        """Before the handlers run: is the claim still ours, with enough lease left for them?

        Renewing is a write; while more than half the lease is left, a read answers the question.
        """
        assert claim.event.lease_until is not None
        if claim.event.lease_until - now > timedelta(seconds=self.lease_seconds / 2):
            return self.inbox.holds(claim)
        return self.inbox.renew(claim, self.lease_seconds, now)

    def _done(self, claim: Claim, event: Event, result: Result, handled: int, now: datetime | None) -> Status | None:
        outcome = (
            f"optimization failed: {printable(result.error, limit=QUOTED_LIMIT)}" if result.error is not None else None
        )
        status = self._finish(claim, Status.DONE, outcome, now, summary=summary(event, result))
        if status is Status.DONE:
            log.info("%s: done (%s %s, %d handler(s))", event.message_id, event.type, event.request_id, handled)
        return status

    def _finish(
        self, claim: Claim, status: Status, error: str | None, now: datetime | None, summary: str | None = None
    ) -> Status | None:
        error = printable(error, limit=ERROR_LIMIT) if error is not None else None
        if not self.inbox.finish(claim, status, error, now, summary=summary):
            log.warning("%s: lost its claim before it could be marked %s", claim.event.message_id, status)
            return None
        if status is Status.DEAD:
            log.error("%s: dead after attempt %d: %s", claim.event.message_id, claim.event.attempts, error)
        elif status is Status.DUPLICATE:
            log.info("%s: duplicate: %s", claim.event.message_id, error)
        return status

    def _retry(
        self, claim: Claim, error: str, now: datetime | None, at_least: float = 0, give_up_after: int | None = None
    ) -> Status | None:
        """Schedule the next attempt, no sooner than `at_least` seconds; or, after `give_up_after` attempts
        (a failure's own budget) or max_attempts, whichever is fewer, mark the event dead."""
        attempts = claim.event.attempts
        if attempts >= min(self.policy.max_attempts, give_up_after or self.policy.max_attempts):
            return self._finish(claim, Status.DEAD, f"{error}; gave up after {attempts} attempts", now)
        error = printable(error, limit=ERROR_LIMIT)
        # The API's Retry-After counts, but no more than the longest backoff: an absurd value must
        # neither overflow the clock nor park an acknowledged event for years.
        delay = max(float(self.policy.delay_after(attempts)), min(at_least, float(max(self.policy.delays))))
        now = now or self.clock()
        if not self.inbox.retry_later(claim, error, now + timedelta(seconds=delay), now):
            log.warning("%s: lost its claim before its retry could be recorded", claim.event.message_id)
            return None
        log.warning(
            "%s: attempt %d of %d failed: %s; retrying in %.0f s",
            claim.event.message_id,
            attempts,
            self.policy.max_attempts,
            error,
            delay,
        )
        self._enqueue(claim.event.id, delay)
        return Status.RETRYING

    def reconcile(self, now: datetime | None = None) -> int:
        """Enqueue every event the inbox says is due; return how many."""
        try:
            ids = self.inbox.due(now)
        except InboxVanished:
            return 0
        except (SQLAlchemyError, InboxUnavailable) as exc:
            log.warning("the reconciler could not read the inbox (%s); it looks again in a minute", describe_error(exc))
            return 0
        for event_id in ids:
            self._enqueue(event_id, 0)
        if ids:
            log.info("reconciler enqueued %d event(s) again", len(ids))
        return len(ids)

    def _enqueue(self, event_id: int, delay: float) -> None:
        # Best effort: the row already records that the event is due, and the reconciler re-reads it.
        try:
            self.enqueue(event_id, delay)
        except Exception as exc:  # each queue backend raises its own errors
            log.warning("could not enqueue event %s (%s); the reconciler will", event_id, describe_error(exc))
