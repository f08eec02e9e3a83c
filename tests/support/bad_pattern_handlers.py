"""A user handler module, loaded by the tests through HANDLER_MODULES, that subscribes to a pattern that is not one."""

from handlers import Event, Registry
from results import Result


def register(handlers: Registry) -> None:
    @handlers.subscribe("route.optimised")
    def never(event: Event, result: Result) -> None:
        raise AssertionError("never subscribed")
