"""The console summary (handlers/console.py): one line per result saying what the optimization achieved."""

import logging

import pytest
from support.events import USER, make_event
from support.standin import CLUSTER_ID, ROUTE_ID

from event_types import Kind
from handlers import console
from optipick_standin import example_result
from results import parse_cluster, parse_route
from summaries import summary


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
