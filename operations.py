"""Replay, recover and prune: what the operator does to stored events, from the command line.

Svix can resend what failed at the door; once this service has answered 2xx, only it can repair a
later failure (the API down for a day, a wrong key, a bug in a handler). A replay resolves the event's
type again with today's configuration (the stored payload, URL path and the current
WEBHOOK_DEFAULT_EVENT_TYPE), starts its attempts from zero, and queues it. Signatures are not checked
again: the event was verified when it arrived, and its timestamp is long past the 5-minute window.

Pruning keeps Svix's redeliveries recognisable: Svix redelivers with the same svix-id for about 28
hours, and a person can resend or recover days later; an id pruned too soon would let such a
redelivery run again. Hence a floor of two days, and by default only finished events are pruned:
failed ones wait until someone has looked at them.
"""

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase

import defaults
from clock import utcnow
from event_types import EventType
from inbox import FAILED_STATUSES, FINISHED_STATUSES, RECOVERABLE_STATUSES, Inbox, Status, StoredEvent, describe_error
from intake import read_delivery
from work_queue import Enqueue

log = logging.getLogger(__name__)

_RELATIVE_TIME = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# The most of each unit worth adding up before an age is refused as too long (and timedelta overflows).
_LONGEST = {"s": 10**13, "m": 10**11, "h": 10**10, "d": 10**8, "w": 10**7}


@dataclass(frozen=True)
class Replayed:
    event: StoredEvent
    status: Status | None  # the status it was put back in; None when a worker holds it right now
    queued: bool = False  # its task is in the queue (else, when received, the reconciler enqueues it)


def replay(
    inbox: Inbox,
    enqueue: Enqueue | None,
    event: StoredEvent,
    default_type: EventType | None,
    now: datetime | None = None,
) -> Replayed:
    """Put one stored event back to be processed, whatever its status, its type resolved again with
    `default_type` (WEBHOOK_DEFAULT_EVENT_TYPE as configured today).

    The inbox is what counts: an event put back as received is enqueued when `enqueue` is given and
    works, and is otherwise left due, for a worker's reconciler to enqueue within a couple of minutes.
    """
    path_type = EventType.parse(event.path_type) if event.path_type else None
    delivery = read_delivery(event.message_id, event.body, event.headers, path_type, default_type)
    if not inbox.replay(event.id, delivery, now):
        return Replayed(event, None)
    queued = False
    if delivery.status is Status.RECEIVED and enqueue is not None:
        try:
            enqueue(event.id, 0)
            queued = True
        except Exception as exc:  # each queue backend raises its own errors; the inbox has it due
            log.warning("%s: not enqueued (%s); the reconciler will", event.message_id, describe_error(exc))
    return Replayed(event, delivery.status, queued)


def matching(
    inbox: Inbox,
    since: datetime,
    until: datetime | None = None,
    statuses: Sequence[Status] = RECOVERABLE_STATUSES,
    type_pattern: str | None = None,
) -> list[StoredEvent]:
    """The events `recover` would replay: received in [since, until), in `statuses`, and with an
    event type matching the shell pattern `type_pattern` (an event of unknown type matches only `*`)."""
    found = inbox.find(since, until, statuses)
    if type_pattern is None:
        return found
    return [e for e in found if type_pattern == "*" or (e.event_type and fnmatchcase(e.event_type, type_pattern))]


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """An ISO 8601 date or time (UTC unless it says otherwise), or an age such as 30m, 6h, 2d, 1w
    (reaching back MAX_AGE_DAYS at most); a ValueError in one line otherwise."""
    text = text.strip()
    age = _RELATIVE_TIME.match(text)
    if age:
        amount = timedelta(**{_UNITS[age.group(2)]: min(int(age.group(1)), _LONGEST[age.group(2)])})
        if amount > timedelta(days=defaults.MAX_AGE_DAYS):
            raise ValueError(f"{text!r} reaches back too far: ages go back {defaults.MAX_AGE_DAYS} days at most")
        return (now or utcnow()) - amount
    try:
        when = datetime.fromisoformat(text)
        return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use 2026-11-28, 2026-11-28T14:30, or an age such as 6h or 2d"
        ) from None
    except OverflowError:  # a zone that takes it past year 1 or 9999
        raise ValueError(f"{text!r} is out of range: use a time between the years 1 and 9999 UTC") from None


def parse_statuses(text: str) -> list[Status]:
    """Comma-separated status names, at least one (an empty list would select every status)."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise ValueError(f"name at least one status: {', '.join(Status)}")
    unknown = [name for name in names if name not in {status.value for status in Status}]
    if unknown:
        raise ValueError(f"{unknown[0]!r} is not a status: use {', '.join(Status)}")
    return [Status(name) for name in names]


def prune(inbox: Inbox, older_than_days: int, include_failed: bool = False, now: datetime | None = None) -> int:
    """Delete finished (and, if asked, failed) events received more than `older_than_days` ago.

    Events still to be processed (received, processing, retrying) are never pruned.
    """
    if older_than_days < defaults.PRUNE_MINIMUM_DAYS:
        raise ValueError(
            f"events must be kept at least {defaults.PRUNE_MINIMUM_DAYS} days, so a Svix redelivery is still recognised"
        )
    statuses = FINISHED_STATUSES + FAILED_STATUSES if include_failed else FINISHED_STATUSES
    before = (now or inbox.clock()) - timedelta(days=older_than_days)
    pruned = inbox.prune(before, statuses)
    if pruned:
        log.info("pruned %d event(s) received before %s", pruned, before.isoformat(timespec="seconds"))
    return pruned
