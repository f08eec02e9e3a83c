"""Building the handlers (handlers/__init__.py): the console summary always, the results folder with
RESULTS_DIR, and the user modules named in HANDLER_MODULES, loaded and called, or refused with a ConfigError
naming the variable."""

import pytest
from support import example_handlers
from support.deliveries import deliver, drain, services_with
from support.events import USER, make_event
from support.standin import CLUSTER_ID, ROUTE_ID

from config import load_settings
from errors import ConfigError
from event_types import Kind
from handlers import ResultsFolder, build_registry, console
from handlers.registry import Event
from inbox import Status
from results import RouteResult


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
        message_id=stored.message_id,
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
    """A HANDLER_MODULES entry not importable, without register() or with a bad pattern is a ConfigError naming it."""
    settings = load_settings({**environ, "HANDLER_MODULES": modules}, env_file=None)
    with pytest.raises(ConfigError, match="HANDLER_MODULES") as raised:
        build_registry(settings)
    assert message in str(raised.value)
