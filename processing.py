"""The worker's side: claim an event, fetch its result, hand it to the handlers, record the outcome.

Runs in a Huey worker, never on the request path. Nothing here takes the worker down: every
failure, the API's or a handler's or a bug's, ends in a recorded status (`done`, `retrying`,
`dead` or `duplicate`) with the error kept in `last_error`. The reconciler (`reconcile`) puts
back into the queue whatever the inbox says is due, because the queue itself can lose work.
"""

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError

import defaults
from errors import AuthenticationError, HandlerError, OptiPickError, RateLimited, ResultNotFound
from event_types import EventType, Kind
from handlers.console import summary
from handlers.registry import Event, Registry
from inbox import Claim, Inbox, Status, utcnow
from optipick_client import OptiPickClient
from results import Result

log = logging.getLogger(__name__)

Enqueue = Callable[[int, float], None]  # (inbox id, delay in seconds)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = defaults.MAX_ATTEMPTS
    delays: tuple[int, ...] = defaults.RETRY_DELAYS
    not_found_max_attempts: int = defaults.NOT_FOUND_MAX_ATTEMPTS

    def delay_after(self, attempt: int) -> int:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        return self.delays[min(attempt, len(self.delays)) - 1]


class Processor:
    def __init__(
        self,
        inbox: Inbox,
        client: OptiPickClient,
        registry: Registry,
        enqueue: Enqueue,
        *,
        policy: RetryPolicy = RetryPolicy(),
        lease_seconds: int = defaults.LEASE_SECONDS,
    ) -> None:
        self.inbox = inbox
        self.client = client
        self.registry = registry
        self.enqueue = enqueue
        self.policy = policy
        self.lease_seconds = lease_seconds
        # Claims being worked on in this process, so a stopping worker can give back what it could
        # not finish instead of leaving it locked until the lease runs out.
        self._active: dict[str, Claim] = {}
        self._active_lock = threading.Lock()

    def process(self, event_id: int, now: datetime | None = None) -> Status | None:
        """Process one event if it is due and nobody else holds it; return the status it was left in
        (None when there was nothing to do, or the claim was lost to another worker meanwhile)."""
        clock = (lambda: now) if now is not None else utcnow
        try:
            claim = self.inbox.claim(event_id, self.lease_seconds, clock())
        except SQLAlchemyError as exc:  # the database is down or busy: the row stays due for later
            log.warning("could not claim event %s (%s); the reconciler will offer it again", event_id, exc)
            return None
        if claim is None:
            log.debug("event %s is not due or is held by another worker", event_id)
            return None
        with self._active_lock:
            self._active[claim.token] = claim
        try:
            return self._process_claimed(claim, clock)
        except SQLAlchemyError as exc:  # the outcome could not be recorded: the lease hands it on
            log.warning("%s: could not record the outcome (%s); it runs again after its lease", claim.event.msg_id, exc)
            return None
        finally:
            with self._active_lock:
                self._active.pop(claim.token, None)

    def release_active(self, now: datetime | None = None) -> int:
        """Give back every event this process is still working on (at shutdown, after the grace
        period); each becomes due at once for the next worker. Returns how many were given back."""
        with self._active_lock:
            claims = list(self._active.values())
        released = sum(self.inbox.release(claim, now) for claim in claims)
        if released:
            log.warning("gave back %d event(s) cut off by the shutdown; they run again on the next start", released)
        return released

    def _process_claimed(self, claim: Claim, clock: Callable[[], datetime]) -> Status | None:
        attempts = claim.event.attempts
        if attempts > self.policy.max_attempts:
            # Attempts are counted when claimed, so this event's last attempts were cut off (a crash
            # or a kill) before they could record an outcome. Stop here instead of looping forever.
            reason = claim.event.last_error or "every attempt was interrupted before it finished"
            return self._finish(claim, Status.DEAD, f"gave up after {attempts - 1} attempts: {reason}", clock)
        try:
            return self._fetch_and_handle(claim, clock)
        except AuthenticationError as exc:
            return self._finish(claim, Status.DEAD, str(exc), clock)
        except ResultNotFound as exc:
            if attempts >= self.policy.not_found_max_attempts:
                return self._finish(claim, Status.DEAD, f"{exc}; gave up after {attempts} attempts", clock)
            return self._retry(claim, str(exc), clock)
        except RateLimited as exc:
            return self._retry(claim, str(exc), clock, at_least=exc.retry_after or 0)
        except (OptiPickError, HandlerError) as exc:
            return self._retry(claim, str(exc), clock)
        except Exception as exc:  # a bug, here or in a library: keep the worker alive and the event safe
            log.exception("unexpected error while processing %s", claim.event.msg_id)
            return self._retry(claim, f"unexpected error: {type(exc).__name__}: {exc}", clock)

    def _fetch_and_handle(self, claim: Claim, clock: Callable[[], datetime]) -> Status | None:
        stored = claim.event
        assert stored.request_id is not None  # intake stores only events with a usable request id as received
        request_id = stored.request_id
        event_type = EventType.parse(stored.event_type) if stored.event_type else None

        result: Result | None = None
        if event_type is None:  # nothing named the type: the API tells which kind this id is
            result = self.client.detect(request_id)
            event_type = EventType(result.kind)
            log.info("%s: detected %s from the API", stored.msg_id, event_type)

        if not self.inbox.reserve_optimization(claim, event_type.kind, request_id, str(event_type)):
            holder = self.inbox.holder_of(event_type.kind, request_id)
            if holder in (None, stored.msg_id):
                log.warning("%s: lost its claim to another worker; leaving it", stored.msg_id)
                return None
            return self._finish(
                claim, Status.DUPLICATE, f"{event_type.kind} {request_id} is handled by {holder}", clock
            )

        if result is None:
            result = self.client.fetch(event_type.kind, request_id)
        if not self._still_ours(claim, clock()):
            log.warning("%s: lost its claim while fetching; leaving it to the new owner", stored.msg_id)
            return None

        event = Event(
            message_id=stored.msg_id,
            type=str(event_type),
            kind=Kind(event_type.kind),
            warehouse=event_type.warehouse or result.site_name,
            user_id=event_type.user_id or result.owner_id,
            request_id=request_id,
            received_at=stored.received_at,
        )
        handled = self.registry.dispatch(event, result)
        outcome = f"optimization failed: {result.error}" if result.error is not None else None
        status = self._finish(claim, Status.DONE, outcome, clock, summary=summary(event, result))
        if status is Status.DONE:
            log.info("%s: done (%s %s, %d handler(s))", stored.msg_id, event.type, request_id, handled)
        return status

    def _still_ours(self, claim: Claim, now: datetime) -> bool:
        """Before the handlers run: is the claim still ours, with enough lease left for them?

        Renewing is a write; while more than half the lease is left, a read answers the question.
        """
        assert claim.event.lease_until is not None
        if claim.event.lease_until - now > timedelta(seconds=self.lease_seconds / 2):
            return self.inbox.holds(claim)
        return self.inbox.renew(claim, self.lease_seconds, now)

    def _finish(
        self,
        claim: Claim,
        status: Status,
        error: str | None,
        clock: Callable[[], datetime],
        summary: str | None = None,
    ) -> Status | None:
        if not self.inbox.finish(claim, status, error, clock(), summary=summary):
            log.warning("%s: lost its claim before it could be marked %s", claim.event.msg_id, status)
            return None
        if status is Status.DEAD:
            log.error("%s: dead after attempt %d: %s", claim.event.msg_id, claim.event.attempts, error)
        elif status is Status.DUPLICATE:
            log.info("%s: duplicate: %s", claim.event.msg_id, error)
        return status

    def _retry(self, claim: Claim, error: str, clock: Callable[[], datetime], at_least: float = 0) -> Status | None:
        attempts = claim.event.attempts
        if attempts >= self.policy.max_attempts:
            return self._finish(claim, Status.DEAD, f"{error}; gave up after {attempts} attempts", clock)
        # The API's Retry-After counts, but no more than the longest backoff: an absurd value must
        # neither overflow the clock nor park an acknowledged event for years.
        delay = max(float(self.policy.delay_after(attempts)), min(at_least, float(max(self.policy.delays))))
        if not self.inbox.retry_later(claim, error, clock() + timedelta(seconds=delay), clock()):
            log.warning("%s: lost its claim before its retry could be recorded", claim.event.msg_id)
            return None
        log.warning(
            "%s: attempt %d of %d failed: %s; retrying in %.0f s",
            claim.event.msg_id,
            attempts,
            self.policy.max_attempts,
            error,
            delay,
        )
        self._enqueue(claim.event.id, delay)
        return Status.RETRYING

    def reconcile(self, now: datetime | None = None) -> int:
        """Enqueue every event the inbox says is due; return how many."""
        ids = self.inbox.due(now)
        for event_id in ids:
            self._enqueue(event_id, 0)
        if ids:
            log.info("reconciler enqueued %d event(s) again", len(ids))
        return len(ids)

    def _enqueue(self, event_id: int, delay: float) -> None:
        # Best effort: the row already records that the event is due, and the reconciler re-reads it.
        try:
            self.enqueue(event_id, delay)
        except Exception:
            log.warning("could not enqueue event %s; the reconciler will", event_id, exc_info=True)
