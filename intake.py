"""Intake: turn an authentic delivery into the inbox row that records it.

Decides the status a delivery starts in: `received` (to be processed), `ignored` (its type is not an
OptiPick optimization type) or `invalid` (authentic but unusable: not a JSON object, or no usable
`request_id`). Pure logic: no I/O, no API call; the request path stays a signature check and one insert.
"""

import functools
import json
import re
from collections.abc import Iterable
from typing import Protocol

from event_types import REQUEST_ID_PATTERN, EventType, resolve
from inbox.records import NewDelivery
from inbox.schema import Status

# The svix-id is the inbox key: letters, digits, _ and - only (Svix's ids are msg_ plus base62).
MESSAGE_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,255}")  # use with fullmatch


class Headers(Protocol):
    """A request's headers, looked up by name: werkzeug's (case-insensitive), or a dict of lower-case names."""

    def get(self, key: str, /) -> str | None: ...
    def items(self) -> Iterable[tuple[str, str]]: ...


# Stored with the body: what identifies and authenticates the delivery, byte for byte.
KEPT_HEADERS = (
    "svix-id",
    "svix-timestamp",
    "svix-signature",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "content-type",
    "user-agent",
)


def message_id_of(headers: Headers) -> str:
    """The delivery's id, read exactly as the svix library reads it: svix-id when present (even
    empty), else webhook-id; so the id stored is the id the signature covered."""
    value = headers.get("svix-id")
    return value if value is not None else headers.get("webhook-id") or ""


def read_delivery(
    message_id: str,
    body: bytes,
    headers: Headers,
    path_type: EventType | None,
    default_type: EventType | None,
) -> NewDelivery:
    """The inbox row for an authentic delivery: its status, type and request id, read from the payload."""
    kept = {name: value for name in KEPT_HEADERS if (value := headers.get(name))}
    delivery = functools.partial(
        NewDelivery, message_id, body=body, headers=kept, path_type=str(path_type) if path_type else None
    )
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the parser allows
        return delivery(Status.INVALID, error="body is not JSON")
    if not isinstance(payload, dict):
        return delivery(Status.INVALID, error="body is not a JSON object")

    request_id = payload.get("request_id")
    usable_id = isinstance(request_id, str) and REQUEST_ID_PATTERN.fullmatch(request_id) is not None
    resolution = resolve(payload, path_type, default_type)
    if resolution.ignored:
        # Not ours to process (a test ping, another product's event), whatever else it carries.
        return delivery(
            Status.IGNORED,
            event_type=resolution.name,
            request_id=request_id if usable_id else None,
            error=f"{resolution.name!r} is not an OptiPick optimization event type",
        )
    if not usable_id:
        error = "no request_id" if request_id is None else "request_id is not a usable id"
        return delivery(Status.INVALID, error=error)

    event_type = resolution.event_type
    return delivery(
        Status.RECEIVED,
        event_type=str(event_type) if event_type else None,
        kind=event_type.kind if event_type else None,
        request_id=request_id,
    )
