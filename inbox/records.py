"""The inbox's records: what intake hands it, what it hands back, and a worker's hold on an event.

Frozen dataclasses, so a record read from the database cannot be changed by the code that reads it.
"""

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from inbox.schema import Status


@dataclass(frozen=True)
class NewDelivery:
    """An authentic delivery, as intake hands it to the inbox."""

    message_id: str
    status: Status
    body: bytes
    headers: Mapping[str, str]
    event_type: str | None = None
    path_type: str | None = None
    kind: str | None = None
    request_id: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class StoredEvent:
    """One stored delivery and what has become of it."""

    id: int
    message_id: str
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
            message_id=values["msg_id"],
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
        values["message_id"] = values.pop("msg_id")
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
class Added:
    """The outcome of `Inbox.add`: the stored row, and whether this call created it."""

    event: StoredEvent
    created: bool


@dataclass(frozen=True)
class Claim:
    """A worker's hold on an event until `event.lease_until`; `token` fences every write it makes."""

    event: StoredEvent
    token: str


# What `Inbox.reserve` answers: this event processes the optimization, another event already does
# (`HeldBy`, naming it), or the claim is no longer this worker's.
@dataclass(frozen=True)
class Reserved:
    pass


@dataclass(frozen=True)
class HeldBy:
    message_id: str


@dataclass(frozen=True)
class ClaimLost:
    pass


Reservation = Reserved | HeldBy | ClaimLost
