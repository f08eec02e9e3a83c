"""Handlers: pattern matching, dispatch order and failures, the console summary, the results folder, and
user handler modules loaded through HANDLER_MODULES."""

import json
import logging
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support import example_handlers
from support.deliveries import deliver, drain, services_with
from support.standin import CLUSTER_ID, ROUTE_ID

from config import load_settings
from errors import ConfigError, HandlerError
from event_types import Kind
from handlers import ResultsFolder, build_registry, console
from handlers.console import summary
from handlers.registry import Event, Pattern, Registry
from inbox import Status
from optipick_standin import example_result
from results import RouteResult, parse_cluster, parse_route

USER = "673f48095739843f4de65ec9"
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
    assert "test_handlers.Exploding" in message
    assert "msg_test" in caplog.text  # the failure is logged with the event's message id
    assert "boom" in caplog.text


def test_failing_handler_leaves_event_retrying_and_others_ran(services, sender, settings):
    """End to end: a handler that raises leaves the event retrying, named in last_error; the other handlers ran."""
    calls: list[str] = []

    def flaky_handler(event: Event, result: RouteResult) -> None:
        raise RuntimeError("cannot reach the WMS")

    services.registry.subscribe("*", flaky_handler)
    services.registry.subscribe("route.optimized", lambda e, r: calls.append(e.request_id))
    stored = deliver(sender, services.inbox, {"request_id": ROUTE_ID}, path="/webhook/route")

    assert services.processor.process(stored.id, now=datetime.now(UTC)) is Status.RETRYING
    row = services.inbox.get(stored.id)
    assert row.status is Status.RETRYING
    assert "handler failed" in row.last_error
    assert "flaky_handler" in row.last_error
    assert calls == [ROUTE_ID]
    assert (settings.results_dir / "route" / f"{ROUTE_ID}.json").is_file()  # the built-in handler ran too


def test_general_event_takes_warehouse_and_user_from_the_result(api, services, sender):
    """For a general route.optimized event the warehouse (site_name) and user id (ownerId) come from the result,
    so a warehouse pattern still matches."""
    document = example_result("route", ROUTE_ID)
    document["ownerId"] = USER
    api.add_result("route", ROUTE_ID, document)
    matched: list[Event] = []
    services.registry.subscribe(f"route.optimized.Example.{USER}", lambda e, r: matched.append(e))
    services.registry.subscribe("route.optimized.Other.*", lambda e, r: pytest.fail("wrong warehouse matched"))

    stored = deliver(sender, services.inbox, {"request_id": ROUTE_ID}, path="/webhook/route.optimized")
    drain(services)

    assert services.inbox.get(stored.id).status is Status.DONE
    [event] = matched
    assert (event.type, event.warehouse, event.user_id) == ("route.optimized", "Example", USER)


def test_warehouse_type_keeps_its_own_warehouse(services, sender):
    """For a warehouse-specific event the warehouse and user id come from the event type, not the result."""
    matched: list[Event] = []
    services.registry.subscribe("cluster.optimized.Other Site.*", lambda e, r: matched.append(e))
    stored = deliver(sender, services.inbox, {"request_id": CLUSTER_ID, "type": "cluster.optimized.Other Site.u7"})
    drain(services)
    assert services.inbox.get(stored.id).status is Status.DONE
    [event] = matched
    assert (event.warehouse, event.user_id) == ("Other Site", "u7")


# Console summary -----------------------------------------------------------------------------------


def test_route_summary():
    """The route summary names the request, warehouse, wave, pick count and invalid picks."""
    result = parse_route(example_result("route", ROUTE_ID))
    assert summary(make_event(Kind.ROUTE, None, None), result) == (
        f"route {ROUTE_ID} (Example, wave WAVE-2025-03-14-07): 6 picks, 1 invalid pick left out; "
        "no distance totals in the result"
    )


def test_route_summary_with_totals():
    """A route result that carries totals gets its distances and saving in the summary."""
    document = example_result("route", ROUTE_ID)
    document.update(asis_distance=2000, optimal_distance=1500, invalid_picks=[])
    result = parse_route(document)
    assert summary(make_event(Kind.ROUTE, "Dock 2", None), result) == (
        f"route {ROUTE_ID} (Dock 2, wave WAVE-2025-03-14-07): 6 picks; "
        "distance 1,500 cm optimized vs 2,000 cm as-is, saving 25.0%"
    )


def test_cluster_summary():
    """The cluster summary gives the cluster count, orders per cluster, both distances and the saving."""
    result = parse_cluster(example_result("cluster", CLUSTER_ID))
    assert summary(make_event(Kind.CLUSTER, "Example", USER, CLUSTER_ID), result) == (
        f"cluster {CLUSTER_ID} (Example, wave WAVE-2025-03-14-08): 2 clusters (orders per cluster: 2, 2); "
        "distance 7,686 cm optimal vs 11,501 cm as-is, saving 33.2%"
    )


def test_cluster_summary_lists_at_most_twenty_clusters():
    """With many clusters the orders-per-cluster list is cut off after twenty."""
    document = example_result("cluster", CLUSTER_ID)
    document["optimal_clusters"] = [
        {"list_id": f"cluster_{i}", "order_ids": ["A"] * (i % 3 + 1), "picks": []} for i in range(25)
    ]
    text = summary(make_event(Kind.CLUSTER, None, None, CLUSTER_ID), parse_cluster(document))
    assert "25 clusters (orders per cluster: 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 2, …)" in text


@pytest.mark.parametrize("kind", [Kind.ROUTE, Kind.CLUSTER])
def test_failed_optimization_summary(kind):
    """A failed optimization's summary says it failed and gives OptiPick's message."""
    result = (parse_route if kind is Kind.ROUTE else parse_cluster)(
        {"request_id": ROUTE_ID, "error": "No valid picks", "site_name": "Example"}
    )
    assert (
        summary(make_event(kind, None, None), result)
        == f"{kind} {ROUTE_ID} (Example): optimization failed: No valid picks"
    )


def test_summarize_logs_the_summary(caplog):
    """The console handler logs the summary line on the 'summary' logger."""
    result = parse_cluster(example_result("cluster", CLUSTER_ID))
    event = make_event(Kind.CLUSTER, "Example", USER, CLUSTER_ID)
    with caplog.at_level(logging.INFO, logger="summary"):
        console.summarize(event, result)
    assert [r.getMessage() for r in caplog.records if r.name == "summary"] == [summary(event, result)]


# Results folder ------------------------------------------------------------------------------------


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize(("kind", "request_id"), [(Kind.ROUTE, ROUTE_ID), (Kind.CLUSTER, CLUSTER_ID)])
def test_results_folder_writes_one_file_per_result(tmp_path, kind, request_id):
    """The result is written as RESULTS_DIR/<kind>/<request_id>.json; writing it twice leaves one file, the same
    content, and no temporary file."""
    document = example_result(kind, request_id)
    result = (parse_route if kind is Kind.ROUTE else parse_cluster)(document)
    folder = ResultsFolder(tmp_path / "results")
    event = make_event(kind, request_id=request_id)

    folder(event, result)
    target = tmp_path / "results" / str(kind) / f"{request_id}.json"
    first = target.read_bytes()
    folder(event, result)

    assert _files(tmp_path / "results") == [f"{kind}/{request_id}.json"]
    assert target.read_bytes() == first
    assert json.loads(first) == document
    assert folder.path_for(event) == target


def test_results_folder_replaces_the_whole_file(tmp_path):
    """A newer result for the same request replaces the file entirely, leaving no trace of the old content."""
    folder = ResultsFolder(tmp_path)
    event = make_event()
    folder(event, parse_route(example_result("route", ROUTE_ID)))
    folder(event, parse_route({"request_id": ROUTE_ID, "error": "later failure"}))
    assert json.loads((tmp_path / "route" / f"{ROUTE_ID}.json").read_text()) == {
        "request_id": ROUTE_ID,
        "error": "later failure",
    }
    assert _files(tmp_path) == [f"route/{ROUTE_ID}.json"]


def test_results_folder_failed_write_leaves_no_temporary_file(tmp_path):
    """When the final rename fails, the error propagates and no temporary file is left behind."""
    folder = ResultsFolder(tmp_path)
    (tmp_path / "route" / f"{ROUTE_ID}.json").mkdir(parents=True)  # the target cannot be replaced by a file
    with pytest.raises(OSError):  # noqa: PT011 -- which OSError depends on the platform
        folder(make_event(), parse_route(example_result("route", ROUTE_ID)))
    assert _files(tmp_path) == []


def test_results_folder_is_registered_only_with_results_dir(environ, settings):
    """With RESULTS_DIR the registry writes to that folder; without it, only the console summary runs."""
    event = make_event()
    with_folder = build_registry(settings).handlers_for(event)
    assert [type(h) for h in with_folder if isinstance(h, ResultsFolder)] == [ResultsFolder]
    assert next(h for h in with_folder if isinstance(h, ResultsFolder)).root == settings.results_dir

    without = load_settings({k: v for k, v in environ.items() if k != "RESULTS_DIR"}, env_file=None)
    assert without.results_dir is None
    assert build_registry(without).handlers_for(event) == [console.summarize]


def test_no_results_dir_processes_without_writing(environ, api, tmp_path):
    """End to end without RESULTS_DIR: the event is done and no results folder appears."""
    with services_with(environ, RESULTS_DIR=None) as (services, sender):
        stored = deliver(sender, services.inbox, {"request_id": ROUTE_ID}, path="/webhook/route")
        assert drain(services) == 1
        assert services.inbox.get(stored.id).status is Status.DONE
    assert api.fetches[("route", ROUTE_ID)] == 1
    assert not (tmp_path / "results").exists()


# HANDLER_MODULES -----------------------------------------------------------------------------------


@pytest.fixture
def example_calls():
    example_handlers.CALLS.clear()
    yield example_handlers.CALLS
    example_handlers.CALLS.clear()


def test_handler_module_is_loaded_and_called_with_the_event(environ, example_calls):
    """A module named in HANDLER_MODULES registers its handler, which gets every Event field and the parsed result."""
    event_type = f"route.optimized.Example.{USER}"
    with services_with(environ, HANDLER_MODULES="support.example_handlers") as (services, sender):
        stored = deliver(sender, services.inbox, {"request_id": ROUTE_ID, "type": event_type})
        other = deliver(sender, services.inbox, {"request_id": CLUSTER_ID}, path="/webhook/cluster")
        assert drain(services) == 2
        assert services.inbox.get(stored.id).status is Status.DONE
        assert services.inbox.get(other.id).status is Status.DONE

    [(event, result)] = example_calls  # the cluster event does not match route.optimized.Example.*
    assert event == Event(
        message_id=stored.msg_id,
        type=event_type,
        kind=Kind.ROUTE,
        warehouse="Example",
        user_id=USER,
        request_id=ROUTE_ID,
        received_at=stored.received_at,
    )
    assert event.received_at.tzinfo is not None
    assert isinstance(result, RouteResult)
    assert result.request_id == ROUTE_ID
    assert len(result.picks) == 6


@pytest.mark.parametrize(
    ("modules", "message"),
    [
        ("no_such_handler_module_xyz", "cannot be imported"),
        ("support.example_handlers no_such_handler_module_xyz", "cannot be imported"),
        ("textwrap", "has no register"),  # importable, but not a handler module
        ("support.bad_pattern_handlers", "not a handler pattern"),
    ],
)
def test_bad_handler_module_is_a_config_error(environ, modules, message):
    """A HANDLER_MODULES entry that cannot be imported, lacks register() or subscribes a bad pattern is a
    ConfigError naming HANDLER_MODULES."""
    settings = load_settings({**environ, "HANDLER_MODULES": modules}, env_file=None)
    with pytest.raises(ConfigError, match="HANDLER_MODULES") as raised:
        build_registry(settings)
    assert message in str(raised.value)


def test_results_folder_removes_temporary_files_left_by_a_crash(tmp_path):
    """Temporary files of an interrupted write are removed at start-up once stale; fresh ones are left alone."""
    import os
    import time

    from handlers.results_folder import STALE_TEMPORARY_SECONDS, ResultsFolder

    kind = tmp_path / "route"
    kind.mkdir()
    stale = kind / f".{ROUTE_ID}.json.abc123.tmp"
    fresh = kind / f".{CLUSTER_ID}.json.def456.tmp"
    result = kind / f"{ROUTE_ID}.json"
    for path in (stale, fresh, result):
        path.write_text("{}")
    old = time.time() - STALE_TEMPORARY_SECONDS - 5
    os.utime(stale, (old, old))
    os.utime(result, (old, old))

    ResultsFolder(tmp_path)

    assert not stale.exists()
    assert fresh.exists()
    assert result.exists()
