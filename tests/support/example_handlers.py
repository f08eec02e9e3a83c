"""A user handler module, loaded by the tests through HANDLER_MODULES: it records what it is called with."""

from handlers import Event, Registry
from results import Result

CALLS: list[tuple[Event, Result]] = []


def register(handlers: Registry) -> None:
    @handlers.subscribe("route.optimized.Example.*")
    def record(event: Event, result: Result) -> None:
        CALLS.append((event, result))
