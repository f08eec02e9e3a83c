"""Replay and recover: put stored events back to be processed, on this side of the acknowledgement.

Svix can resend what failed at the door; once this service has answered 2xx, only it can repair a
later failure (the API down for a day, a wrong key, a bug in a handler). A replay resolves the event's
type again with today's configuration (the stored payload, URL path and the current
WEBHOOK_DEFAULT_EVENT_TYPE), starts its attempts from zero, and queues it. Signatures are not checked
again: the event was verified when it arrived, and its timestamp is long past the 5-minute window.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase

from event_types import EventType
from inbox import Status, StoredEvent, utcnow
from intake import read_delivery
from services import Services

# What `recover` looks at when no --status is given: what failed after the acknowledgement.
DEFAULT_RECOVER_STATUSES = (Status.DEAD,)

_RELATIVE_TIME = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass(frozen=True)
class Replayed:
    event: StoredEvent
    status: Status | None  # the status it was put back in; None when a worker holds it right now


def replay(services: Services, event: StoredEvent, now: datetime | None = None) -> Replayed:
    """Put one stored event back to be processed, whatever its status."""
    now = now or utcnow()
    path_type = EventType.parse(event.path_type) if event.path_type else None
    delivery = read_delivery(event.msg_id, event.body, event.headers, path_type, services.settings.default_event_type)
    if not services.inbox.replay(event.id, delivery, now):
        return Replayed(event, None)
    if delivery.status is Status.RECEIVED:
        services.queue.enqueue(event.id)
    return Replayed(event, delivery.status)


def matching(
    services: Services,
    since: datetime,
    until: datetime | None = None,
    statuses: Sequence[Status] = DEFAULT_RECOVER_STATUSES,
    type_pattern: str | None = None,
) -> list[StoredEvent]:
    """The events `recover` would replay: received in [since, until), in `statuses`, and with an
    event type matching the shell pattern `type_pattern` (an event of unknown type matches only `*`)."""
    found = services.inbox.find(since, until, statuses)
    if type_pattern is None:
        return found
    return [e for e in found if type_pattern == "*" or (e.event_type and fnmatchcase(e.event_type, type_pattern))]


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """An ISO 8601 date or time (UTC unless it says otherwise), or an age such as 30m, 6h, 2d, 1w."""
    text = text.strip()
    age = _RELATIVE_TIME.match(text)
    if age:
        return (now or utcnow()) - timedelta(**{_UNITS[age.group(2)]: int(age.group(1))})
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time: use 2026-11-28, 2026-11-28T14:30, or an age such as 6h or 2d"
        ) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
