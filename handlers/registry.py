"""The handler registry: functions subscribed to event-type patterns, and the event they receive.

A handler is any callable `handler(event, result) -> None` (see `Handler`). A pattern is one of:

- `*`: every event;
- a kind, `route.optimized` or `cluster.optimized`: every event of that kind, whatever the warehouse;
- a warehouse pattern, `route.optimized.<warehouse>.<user id>`, where either part may use shell
  wildcards (`route.optimized.Example.*`). It matches the event's warehouse and user id, which come from
  the event type or, for a general type such as `route.optimized`, from the fetched result.

Handlers may run more than once for one event (a retry after another handler failed, or a crash
before the event was marked done), so they must be idempotent: key their effects on
`event.request_id` or `event.message_id`.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Protocol, overload

from errors import HandlerError
from event_types import Event, Kind
from printable import printable
from results import Result

log = logging.getLogger(__name__)


class Handler(Protocol):
    def __call__(self, event: Event, result: Result, /) -> None: ...


@dataclass(frozen=True)
class Pattern:
    text: str
    kind: Kind | None = None  # None: any kind
    warehouse: str | None = None  # a shell pattern; None: any warehouse
    user_id: str | None = None

    @classmethod
    def parse(cls, text: str) -> "Pattern":
        if text == "*":
            return cls(text)
        for kind in Kind:
            general = f"{kind}.optimized"
            if text in (general, general + ".*"):
                return cls(text, kind)
            if text.startswith(general + "."):
                warehouse, _, user_id = text[len(general) + 1 :].rpartition(".")
                if warehouse and user_id:
                    return cls(text, kind, warehouse, user_id)
        raise ValueError(
            f"{text!r} is not a handler pattern: use '*', route.optimized, cluster.optimized or "
            "<kind>.optimized.<warehouse>.<user id> (wildcards allowed in the last two parts)"
        )

    def matches(self, event: Event) -> bool:
        if self.kind is not None and self.kind != event.kind:
            return False
        return _part_matches(self.warehouse, event.warehouse) and _part_matches(self.user_id, event.user_id)


def _part_matches(pattern: str | None, value: str | None) -> bool:
    if pattern is None:
        return True
    return value is not None and fnmatchcase(value, pattern)


class Registry:
    """Owns which handlers run for which event: subscriptions by pattern, and running them in order."""

    def __init__(self) -> None:
        self._subscriptions: list[tuple[Pattern, Handler]] = []

    @overload
    def subscribe(self, pattern: str) -> Callable[[Handler], Handler]: ...
    @overload
    def subscribe(self, pattern: str, handler: Handler) -> Handler: ...

    def subscribe(self, pattern: str, handler: Handler | None = None) -> Handler | Callable[[Handler], Handler]:
        """Call `handler` for every event matching `pattern`; without a handler, a decorator."""
        parsed = Pattern.parse(pattern)

        def add(h: Handler) -> Handler:
            self._subscriptions.append((parsed, h))
            return h

        return add if handler is None else add(handler)

    def handlers_for(self, event: Event) -> list[Handler]:
        return [handler for pattern, handler in self._subscriptions if pattern.matches(event)]

    def dispatch(self, event: Event, result: Result) -> int:
        """Run every matching handler, in the order they subscribed, and return how many ran.

        A handler that raises is logged with its event and what it raised (printable: its text may quote
        the result) and does not stop the others; afterwards HandlerError names every handler that
        failed, so the event is retried.
        """
        failed = []
        handlers = self.handlers_for(event)
        for handler in handlers:
            try:
                handler(event, result)
            except Exception as exc:
                name = handler_name(handler)
                log.exception(
                    "handler %s failed on %s (request %s): %s",
                    name,
                    event.message_id,
                    event.request_id,
                    printable(f"{type(exc).__name__}: {exc}"),
                )
                failed.append(name)
        if failed:
            raise HandlerError(f"handler{'s' if len(failed) > 1 else ''} failed: {', '.join(failed)}")
        return len(handlers)


def handler_name(handler: Handler) -> str:
    """module.name of a function, or of the class of a callable object."""
    named = handler if hasattr(handler, "__qualname__") else type(handler)
    return f"{named.__module__}.{named.__qualname__}"
