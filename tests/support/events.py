"""Events as the handlers receive them (handlers.registry.Event), built directly for the handler tests."""

from datetime import UTC, datetime

from event_types import Kind
from handlers.registry import Event
from support.standin import ROUTE_ID

USER = "673f48095739843f4de65ec9"  # the user id of the example warehouse types
RECEIVED = datetime(2025, 3, 14, 7, 43, tzinfo=UTC)


def make_event(
    kind: Kind = Kind.ROUTE,
    warehouse: str | None = "Example",
    user_id: str | None = USER,
    request_id: str = ROUTE_ID,
    type_: str | None = None,
) -> Event:
    return Event(
        message_id="msg_test",
        type=type_ or f"{kind}.optimized",
        kind=kind,
        warehouse=warehouse,
        user_id=user_id,
        request_id=request_id,
        received_at=RECEIVED,
    )
