"""The service's one source of the current time, and the type of anything that can stand in for it.

Long-lived objects (the inbox, the processor) take a `Clock` in their constructor; their methods and
pure functions take `now`, defaulting to that clock. Tests pass a clock or a `now` of their own
instead of patching the time.
"""

from collections.abc import Callable
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    """Now, as an aware UTC datetime: the only kind of time the service stores or compares."""
    return datetime.now(UTC)
