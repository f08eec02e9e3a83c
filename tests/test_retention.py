"""Pruning (retention.py): `python main.py prune` and the hourly prune task delete only old finished events
(and, when asked, failed ones) with their history, never one still to be processed, and never younger than
two days."""

from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select
from support.cli import run_cli
from support.deliveries import deliver, drain, route_event, send_ignored, send_invalid, services_with
from support.outcomes import received_ago, snapshot, status_of
from support.standin import CLUSTER_ID, UNKNOWN_ID

import inbox as inbox_module
from inbox import Status, StoredEvent

ROUTE_2 = "2" * 24
ROUTE_3 = "3" * 24
ROUTE_4 = "4" * 24
ROUTE_5 = "5" * 24


@pytest.fixture
def aged(services, sender, api) -> dict[str, StoredEvent]:
    """An event in every status received 40 days ago, plus `done` events 10 days and 1 day old."""
    for request_id in (ROUTE_2, ROUTE_3, ROUTE_4, ROUTE_5):
        api.add_result("route", request_id)
    api.fail_first("cluster", CLUSTER_ID, (403, {}, {"message": "Forbidden"}))
    events = {
        "done": route_event(services, sender),
        "duplicate": route_event(services, sender),
        "dead": deliver(sender, services.inbox, {"request_id": CLUSTER_ID}, "/webhook/cluster"),
        "retrying": route_event(services, sender, UNKNOWN_ID),
        "done_10_days": route_event(services, sender, ROUTE_4),
        "done_1_day": route_event(services, sender, ROUTE_5),
        "ignored": send_ignored(sender, services),
        "invalid": send_invalid(sender, services),
    }
    drain(services)
    events["received"] = route_event(services, sender, ROUTE_2)
    events["processing"] = route_event(services, sender, ROUTE_3)
    assert services.inbox.claim(events["processing"].id, 60) is not None
    ages = {"done_10_days": timedelta(days=10), "done_1_day": timedelta(days=1)}
    for name, event in events.items():
        received_ago(services, event.message_id, ages.get(name, timedelta(days=40)))
    assert {name: status_of(services, e.message_id) for name, e in events.items()} == {
        name: Status(name.split("_")[0]) for name in events
    }
    return events


def history_rows(services, event_ids: list[int]) -> int:
    history = inbox_module.history
    with services.inbox.engine.connect() as conn:
        return conn.scalar(select(func.count()).select_from(history).where(history.c.event_id.in_(event_ids)))


FINISHED_OLD = {"done", "duplicate", "ignored"}


@pytest.mark.parametrize(
    ("args", "days", "deleted"),
    [
        ([], 30, FINISHED_OLD),
        (["--older-than", "5"], 5, FINISHED_OLD | {"done_10_days"}),
        (["--older-than", "2"], 2, FINISHED_OLD | {"done_10_days"}),
        (["--older-than", "41"], 41, set()),
        (["--include-failed"], 30, FINISHED_OLD | {"dead", "invalid"}),
        (["--older-than", "5", "--include-failed"], 5, FINISHED_OLD | {"dead", "invalid", "done_10_days"}),
    ],
    ids=["default-30-days", "5-days", "minimum-2-days", "none-old-enough", "include-failed", "5-days-include-failed"],
)
def test_prune_deletes_only_old_finished_events_and_their_history(environ, services, aged, args, days, deleted):
    """prune deletes finished (with --include-failed, failed) events older than the cutoff, with their history."""
    before = snapshot(services)
    gone_ids = [aged[name].id for name in deleted]
    assert history_rows(services, gone_ids) == sum(len(services.inbox.history_of(i)) for i in gone_ids)

    result = run_cli(environ, "prune", *args)

    assert result.exit_code == 0, result.output
    assert result.stdout == f"pruned {len(deleted)} event(s) older than {days} days\n"
    assert {name for name, e in aged.items() if services.inbox.get(e.id) is None} == deleted
    assert history_rows(services, gone_ids) == 0
    after = snapshot(services)
    for name in set(aged) - deleted:
        assert after[aged[name].message_id] == before[aged[name].message_id]
    assert run_cli(environ, "prune", *args).stdout == f"pruned 0 event(s) older than {days} days\n"


@pytest.mark.parametrize("value", ["1", "0", "-3", "a week"])
def test_prune_refuses_fewer_than_two_days(environ, services, sender, value):
    """--older-than below 2 (or not a number) is a usage error (exit 2) and deletes nothing."""
    event = route_event(services, sender)
    drain(services)
    received_ago(services, event.message_id, timedelta(days=40))
    before = snapshot(services)
    result = run_cli(environ, "prune", "--older-than", value)
    assert result.exit_code == 2
    assert "--older-than" in result.stderr
    assert snapshot(services) == before


def prune_task(services, minute: int = 17):
    tasks = services.queue.huey.read_periodic(datetime(2026, 11, 28, 5, minute))
    return [task for task in tasks if task.name == "prune"]


def test_periodic_prune_deletes_old_finished_events(environ, services, aged):
    """With PRUNE_AFTER_DAYS=3 the hourly `prune` task (at minute 17) deletes finished events older than 3 days."""
    with services_with(environ, PRUNE_AFTER_DAYS="3") as (pruning, _):
        assert prune_task(pruning, minute=16) == []
        [task] = prune_task(pruning)
        pruning.queue.huey.execute(task)
    gone = {name for name, e in aged.items() if services.inbox.get(e.id) is None}
    assert gone == FINISHED_OLD | {"done_10_days"}
    assert history_rows(services, [aged[name].id for name in gone]) == 0


def test_periodic_prune_does_nothing_without_prune_after_days(services, aged):
    """Without PRUNE_AFTER_DAYS the hourly `prune` task runs and deletes nothing."""
    before = snapshot(services)
    [task] = prune_task(services)
    services.queue.huey.execute(task)
    assert snapshot(services) == before
