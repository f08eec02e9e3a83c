"""The handler registry (handlers/registry.py): patterns by kind, warehouse and user id, and dispatch in
subscription order, where one failing handler does not stop the others and every failure is named."""

import pytest
from support.events import USER, make_event
from support.standin import ROUTE_ID

from errors import HandlerError
from event_types import Kind
from handlers.registry import Event, Pattern, Registry
from optipick_standin import example_result
from results import RouteResult, parse_route

# Patterns ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "event", "matches"),
    [
        ("*", make_event(Kind.ROUTE), True),
        ("*", make_event(Kind.CLUSTER, None, None), True),
        ("route.optimized", make_event(Kind.ROUTE, "Other", "u1"), True),
        ("route.optimized", make_event(Kind.ROUTE, None, None), True),
        ("route.optimized", make_event(Kind.CLUSTER), False),
        ("route.optimized.*", make_event(Kind.ROUTE, "Other", "u1"), True),
        ("cluster.optimized", make_event(Kind.CLUSTER, "Example", USER), True),
        ("cluster.optimized", make_event(Kind.CLUSTER, "Somewhere Else", "u2"), True),
        ("cluster.optimized", make_event(Kind.ROUTE), False),
        (f"route.optimized.Example.{USER}", make_event(Kind.ROUTE, "Example", USER), True),
        (f"route.optimized.Example.{USER}", make_event(Kind.ROUTE, "Example", "someoneelse"), False),
        (f"route.optimized.Example.{USER}", make_event(Kind.ROUTE, "Other", USER), False),
        (f"route.optimized.Example.{USER}", make_event(Kind.CLUSTER, "Example", USER), False),
        (f"route.optimized.Example.{USER}", make_event(Kind.ROUTE, "example", USER), False),
        (f"route.optimized.Example.{USER}", make_event(Kind.ROUTE, None, None), False),
        ("route.optimized.Example.*", make_event(Kind.ROUTE, "Example", "anyone"), True),
        ("route.optimized.Example.*", make_event(Kind.ROUTE, "Example2", USER), False),
        ("route.optimized.Example.*", make_event(Kind.ROUTE, "Example", None), False),
        ("route.optimized.Ex*.*", make_event(Kind.ROUTE, "Example", USER), True),
        ("cluster.optimized.*.*", make_event(Kind.CLUSTER, "Anywhere", "u"), True),
        (f"route.optimized.Site.A.1.{USER}", make_event(Kind.ROUTE, "Site.A.1", USER), True),
        (f"route.optimized.Site.A.1.{USER}", make_event(Kind.ROUTE, "Site", USER), False),
        ("route.optimized.Site.*.*", make_event(Kind.ROUTE, "Site.A.1", USER), True),
    ],
)
def test_pattern_matching(pattern, event, matches):
    """A pattern matches by kind, and by warehouse and user id with shell wildcards (warehouses may hold dots)."""
    assert Pattern.parse(pattern).matches(event) is matches


def test_pattern_with_dotted_warehouse_splits_on_the_last_dot():
    """In a warehouse pattern the user id is the part after the last dot; the warehouse keeps its dots."""
    parsed = Pattern.parse(f"cluster.optimized.Site.A.1.{USER}")
    assert (parsed.kind, parsed.warehouse, parsed.user_id) == (Kind.CLUSTER, "Site.A.1", USER)


@pytest.mark.parametrize(
    "pattern",
    [
        "",
        "**",
        "route",
        "cluster",
        "route.optimised",
        "order.optimized",
        "ROUTE.OPTIMIZED",
        "route.optimized.",
        "route.optimized.Example",
        "route.optimized.Example.",
        f"route.optimized..{USER}",
        "route.optimizedExample.x",
    ],
)
def test_invalid_patterns_raise(pattern):
    """A string that is not '*', a kind or a warehouse pattern raises ValueError, from Pattern and subscribe."""
    with pytest.raises(ValueError, match="not a handler pattern"):
        Pattern.parse(pattern)
    with pytest.raises(ValueError, match="not a handler pattern"):
        Registry().subscribe(pattern, lambda event, result: None)


# Dispatch ------------------------------------------------------------------------------------------


def test_handlers_run_in_subscription_order():
    """Matching handlers run in the order they subscribed, whatever their patterns; others do not run."""
    registry = Registry()
    calls: list[str] = []
    registry.subscribe(f"route.optimized.Example.{USER}", lambda e, r: calls.append("warehouse"))
    registry.subscribe("*", lambda e, r: calls.append("all"))
    registry.subscribe("cluster.optimized", lambda e, r: calls.append("cluster"))

    @registry.subscribe("route.optimized")
    def route_handler(event: Event, result: RouteResult) -> None:
        calls.append("route")

    result = parse_route(example_result("route", ROUTE_ID))
    assert registry.dispatch(make_event(Kind.ROUTE), result) == 3
    assert calls == ["warehouse", "all", "route"]


class Exploding:
    def __call__(self, event: Event, result: RouteResult) -> None:
        raise OSError("disk full")


def test_dispatch_runs_every_handler_and_names_the_failed_ones(caplog):
    """Handlers after a failing one still run; HandlerError then names every handler that failed."""
    registry = Registry()
    calls: list[str] = []

    def broken(event: Event, result: RouteResult) -> None:
        raise RuntimeError("boom")

    registry.subscribe("*", broken)
    registry.subscribe("*", lambda e, r: calls.append("after"))
    registry.subscribe("*", Exploding())
    result = parse_route(example_result("route", ROUTE_ID))
    with pytest.raises(HandlerError) as raised:
        registry.dispatch(make_event(), result)
    assert calls == ["after"]
    message = str(raised.value)
    assert message.startswith("handlers failed: ")
    assert "broken" in message
    assert "test_registry.Exploding" in message
    assert "msg_test" in caplog.text  # the failure is logged with the event's message id
    assert "boom" in caplog.text
