"""OptiPick's webhook event types, how a delivery's type is worked out, and the Event handlers receive.

OptiPick sends `route.optimized` and `cluster.optimized` for every warehouse, and
`route.optimized.{warehouse}.{user id}` / `cluster.optimized.{warehouse}.{user id}` for one warehouse.
The payload is only known to carry `request_id`, so a delivery's type comes from the first of:
a type field in the payload, the endpoint's URL path, WEBHOOK_DEFAULT_EVENT_TYPE; failing all three,
the worker asks the API (see processing.py).
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from printable import printable

if TYPE_CHECKING:  # for the annotations only: both modules import this one
    from inbox.records import StoredEvent
    from results import Result

# Wide enough for any request id format (observed ids are 24 hex characters, MongoDB ObjectIds),
# narrow enough to keep every path and query character out of the API's URLs. Use with fullmatch.
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
PAYLOAD_TYPE_FIELDS = ("type", "event_type", "eventType")
MAX_TYPE_LENGTH = 255
_USER_ID = re.compile(r"^[A-Za-z0-9_-]+$")


class Kind(StrEnum):
    ROUTE = "route"
    CLUSTER = "cluster"


@dataclass(frozen=True)
class EventType:
    kind: Kind
    warehouse: str | None = None
    user_id: str | None = None

    @classmethod
    def parse(cls, text: str) -> "EventType | None":
        """The event type named by `text`, or None when it is not an OptiPick optimization type.

        Besides the four documented forms, a bare kind (`route`, `CLUSTER`) is accepted, as the short
        URL paths `/webhook/route` and `/webhook/cluster` and a payload `type` field may use it.
        """
        if not text or len(text) > MAX_TYPE_LENGTH or not text.isprintable():
            return None
        if text.lower() in set(Kind):
            return cls(Kind(text.lower()))
        for kind in Kind:
            general = f"{kind}.optimized"
            if text == general:
                return cls(kind)
            if text.startswith(general + "."):
                # The warehouse is OptiPick's site name and may itself contain dots; the user id cannot.
                warehouse, _, user_id = text[len(general) + 1 :].rpartition(".")
                if warehouse and _USER_ID.match(user_id):
                    return cls(kind, warehouse, user_id)
        return None

    @property
    def general(self) -> str:
        return f"{self.kind}.optimized"

    def __str__(self) -> str:
        if self.warehouse is None:
            return self.general
        return f"{self.general}.{self.warehouse}.{self.user_id}"


@dataclass(frozen=True)
class Event:
    """What a handler learns about the delivery that announced a result."""

    message_id: str  # the svix-id, the same on every redelivery
    type: str  # the event type, e.g. route.optimized or route.optimized.Example.673f…
    kind: Kind
    warehouse: str | None
    user_id: str | None
    request_id: str
    received_at: datetime

    @classmethod
    def announced(cls, stored: "StoredEvent", event_type: EventType, result: "Result") -> "Event":
        """The event as handlers see it: the warehouse and user id from the type when it names them
        (a warehouse-specific type), else from the fetched result."""
        assert stored.request_id is not None  # only events with a usable request id are processed
        return cls(
            message_id=stored.message_id,
            type=str(event_type),
            kind=event_type.kind,
            warehouse=event_type.warehouse or result.site_name,
            user_id=event_type.user_id or result.owner_id,
            request_id=stored.request_id,
            received_at=stored.received_at,
        )


@dataclass(frozen=True)
class Resolution:
    """What a delivery's type resolved to. `name` is what was given; `event_type` is None when that
    is not an OptiPick type (the delivery is ignored) or when nothing was given (`source` is None)."""

    name: str | None
    event_type: EventType | None
    source: str | None

    @property
    def ignored(self) -> bool:
        return self.name is not None and self.event_type is None


def resolve(payload: Mapping[str, Any], path_type: EventType | None, default: EventType | None) -> Resolution:
    """Resolve a delivery's type from the payload, then the URL path, then the configured default."""
    for name in PAYLOAD_TYPE_FIELDS:
        value = payload.get(name)
        if isinstance(value, str) and value:
            event_type = EventType.parse(value)
            # An unknown type is stored and logged as it came, but printable (a NUL cannot even be
            # stored in PostgreSQL) and cut to the column's length.
            name = str(event_type) if event_type else printable(value, limit=MAX_TYPE_LENGTH)
            return Resolution(name, event_type, "payload")
    for source, event_type in (("path", path_type), ("default", default)):
        if event_type is not None:
            return Resolution(str(event_type), event_type, source)
    return Resolution(None, None, None)
