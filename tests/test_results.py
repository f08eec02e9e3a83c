"""Lenient parsing of OptiPick route and cluster results, on the fixtures and on variations of them."""

import copy
import json
import random
from pathlib import Path

import pytest

from event_types import Kind
from results import ClusterResult, RouteResult, parse_cluster, parse_result, parse_route

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
ROUTE_DOC = json.loads((FIXTURES / "route-result.json").read_text())
CLUSTER_DOC = json.loads((FIXTURES / "cluster-result.json").read_text())

# Top-level keys and the attribute each one feeds, with the value that attribute takes when the key is gone.
HEADER_ATTRIBUTES = {
    "request_id": ("request_id", None),
    "site_name": ("site_name", None),
    "site_id": ("site_id", None),
    "wave_id": ("wave_id", None),
    "ownerId": ("owner_id", None),
    "timestamp": ("timestamp", None),
    "computation_time": ("computation_time", None),
    "error": ("error", None),
    "unit": ("unit", None),
    "invalid_picks": ("invalid_picks", ()),
    "route_id": ("route_id", None),
}
PICK_ATTRIBUTES = {
    "pick_id": ("pick_id", None),
    "location_id": ("location_ids", ()),
    "optim_sequence": ("optim_sequence", None),
    "asis_sequence": ("asis_sequence", None),
    "order_id": ("order_id", None),
    "sku_id": ("sku_id", None),
    "quantity": ("quantity", None),
}


def route_doc() -> dict:
    return copy.deepcopy(ROUTE_DOC)


def cluster_doc() -> dict:
    return copy.deepcopy(CLUSTER_DOC)


def _optional_keys(doc: dict, essential: str) -> list[str]:
    return sorted(key for key in doc if key != essential)


# The fixtures --------------------------------------------------------------------------------------


def test_route_fixture_parses_to_its_values():
    """The route fixture parses with every modelled field read, picks in optimized order, and the invalid pick."""
    result = parse_route(route_doc())
    assert isinstance(result, RouteResult)
    assert result.kind is Kind.ROUTE
    assert result.request_id == ROUTE_DOC["request_id"]
    assert (result.site_name, result.site_id, result.wave_id) == (
        "Example",
        "6650a1c27b45cf4158267c11",
        "WAVE-2025-03-14-07",
    )
    assert result.owner_id is None  # the route fixture carries no ownerId
    assert result.route_id == "PICKLIST-000481"
    assert result.unit == "cm"
    assert result.computation_time == pytest.approx(0.0731)
    assert not result.failed
    assert [p.optim_sequence for p in result.picks] == [0, 1, 2, 3, 4, 5]
    first = result.picks[0]
    assert (first.pick_id, first.location_ids, first.order_id, first.sku_id, first.quantity, first.asis_sequence) == (
        "PK-000481-01",
        ("A01-02-003",),
        "SO-55120",
        "SKU-10442",
        2.0,
        0,
    )
    [invalid] = result.invalid_picks
    assert (invalid.pick_id, invalid.reason) == ("PK-000481-07", "Location not found")
    assert result.asis_distance is None
    assert result.optimal_distance is None


def test_cluster_fixture_parses_to_its_values():
    """The cluster fixture parses with its clusters, order ids, pick counts, distances and owner."""
    result = parse_cluster(cluster_doc())
    assert isinstance(result, ClusterResult)
    assert result.kind is Kind.CLUSTER
    assert result.owner_id == "673f48095739843f4de65ec9"
    assert [(c.list_id, c.order_ids, c.pick_count) for c in result.optimal_clusters] == [
        ("cluster_0", ("SO-60001", "SO-60002"), 3),
        ("cluster_1", ("SO-60003", "SO-60004"), 4),
    ]
    assert [c.list_id for c in result.asis_clusters] == ["PL-7001", "PL-7002"]
    assert result.optimal_distance == pytest.approx(7685.603772267767)
    assert result.asis_distance == pytest.approx(11500.745046544078)
    assert result.optimal_clusters[0].estimated_distance == pytest.approx(3410.092508176431)


@pytest.mark.parametrize(("kind", "doc"), [(Kind.ROUTE, ROUTE_DOC), (Kind.CLUSTER, CLUSTER_DOC)])
def test_parse_result_dispatches_on_kind(kind, doc):
    """parse_result gives the result class of the kind asked for."""
    result = parse_result(kind, copy.deepcopy(doc))
    assert result.kind is kind
    assert result.request_id == doc["request_id"]


# Route picks ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_route_picks_are_sorted_by_optim_sequence_when_shuffled(seed):
    """Picks arriving in any order come out sorted by optim_sequence."""
    doc = route_doc()
    expected = [p["pick_id"] for p in sorted(doc["picks"], key=lambda p: p["optim_sequence"])]
    random.Random(seed).shuffle(doc["picks"])
    result = parse_route(doc)
    assert [p.pick_id for p in result.picks] == expected


def test_route_picks_sort_on_sequence_not_on_position_or_asis():
    """Sorting uses optim_sequence, whatever the start value, and puts picks without one last."""
    doc = route_doc()
    picks = doc["picks"]
    for pick, sequence in zip(picks, [15, 11, None, 13, 12, 14], strict=True):
        pick["optim_sequence"] = sequence
    result = parse_route(doc)
    assert [p.optim_sequence for p in result.picks] == [11, 12, 13, 14, 15, None]
    assert result.picks[-1].pick_id == picks[2]["pick_id"]


@pytest.mark.parametrize(
    ("location_id", "expected"),
    [
        ("A01-02-003", ("A01-02-003",)),
        (["A01-02-003"], ("A01-02-003",)),
        (["A01-02-003", "B02-05-004"], ("A01-02-003", "B02-05-004")),
        ([], ()),
        (1234, ("1234",)),
        (None, ()),
    ],
)
def test_route_location_id_string_or_list(location_id, expected):
    """A pick's location_id is read whether it is a string, a list, a number or null."""
    doc = route_doc()
    doc["picks"][0]["location_id"] = location_id
    [pick] = [p for p in parse_route(doc).picks if p.pick_id == doc["picks"][0]["pick_id"]]
    assert pick.location_ids == expected


# Missing or null optional fields -------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["drop", "null"])
@pytest.mark.parametrize("key", _optional_keys(ROUTE_DOC, "picks"))
def test_route_without_optional_top_level_field(key, missing):
    """A route result still parses when any top-level field but picks is missing or null."""
    doc = route_doc()
    if missing == "drop":
        del doc[key]
    else:
        doc[key] = None
    result = parse_route(doc)
    assert len(result.picks) == len(ROUTE_DOC["picks"])
    if key in HEADER_ATTRIBUTES:
        attribute, empty = HEADER_ATTRIBUTES[key]
        assert getattr(result, attribute) == empty


@pytest.mark.parametrize("missing", ["drop", "null"])
@pytest.mark.parametrize("key", sorted(ROUTE_DOC["picks"][0]))
def test_route_picks_without_optional_field(key, missing):
    """Route picks still parse when any of their fields is missing or null in every pick."""
    doc = route_doc()
    for pick in doc["picks"]:
        if missing == "drop":
            del pick[key]
        else:
            pick[key] = None
    result = parse_route(doc)
    assert len(result.picks) == len(ROUTE_DOC["picks"])
    if key in PICK_ATTRIBUTES:
        attribute, empty = PICK_ATTRIBUTES[key]
        assert all(getattr(p, attribute) == empty for p in result.picks)


@pytest.mark.parametrize("missing", ["drop", "null"])
@pytest.mark.parametrize("key", _optional_keys(CLUSTER_DOC, "optimal_clusters"))
def test_cluster_without_optional_top_level_field(key, missing):
    """A cluster result still parses when any top-level field but optimal_clusters is missing or null."""
    doc = cluster_doc()
    if missing == "drop":
        del doc[key]
    else:
        doc[key] = None
    result = parse_cluster(doc)
    assert len(result.optimal_clusters) == len(CLUSTER_DOC["optimal_clusters"])
    if key in HEADER_ATTRIBUTES:
        attribute, empty = HEADER_ATTRIBUTES[key]
        assert getattr(result, attribute) == empty
    if key == "asis_clusters":
        assert result.asis_clusters == ()


@pytest.mark.parametrize("missing", ["drop", "null"])
@pytest.mark.parametrize("key", sorted(CLUSTER_DOC["optimal_clusters"][0]))
def test_clusters_without_optional_field(key, missing):
    """Clusters still parse when any of their fields is missing or null in every cluster, as-is and optimal."""
    doc = cluster_doc()
    for cluster in doc["optimal_clusters"] + doc["asis_clusters"]:
        if missing == "drop":
            del cluster[key]
        else:
            cluster[key] = None
    result = parse_cluster(doc)
    assert len(result.optimal_clusters) == len(CLUSTER_DOC["optimal_clusters"])
    if key == "list_id":
        assert all(c.list_id is None for c in result.optimal_clusters)
    if key == "estimated_distance":
        assert all(c.estimated_distance is None for c in result.optimal_clusters)
    if key == "picks":
        assert all(c.pick_count == 0 for c in result.optimal_clusters)


@pytest.mark.parametrize("missing", ["drop", "null"])
@pytest.mark.parametrize("key", sorted(CLUSTER_DOC["optimal_clusters"][0]["picks"][0]))
def test_cluster_picks_without_optional_field(key, missing):
    """Cluster picks still parse when any of their fields is missing or null in every pick."""
    doc = cluster_doc()
    for cluster in doc["optimal_clusters"] + doc["asis_clusters"]:
        for pick in cluster["picks"]:
            if missing == "drop":
                del pick[key]
            else:
                pick[key] = None
    result = parse_cluster(doc)
    assert [c.pick_count for c in result.optimal_clusters] == [3, 4]
    assert [c.order_ids for c in result.optimal_clusters] == [("SO-60001", "SO-60002"), ("SO-60003", "SO-60004")]


def test_cluster_order_ids_fall_back_to_the_picks_orders():
    """Without order_ids, a cluster's orders are its picks' orders, unique, in order of first appearance."""
    doc = cluster_doc()
    for cluster in doc["optimal_clusters"]:
        del cluster["order_ids"]
    result = parse_cluster(doc)
    assert [c.order_ids for c in result.optimal_clusters] == [("SO-60001", "SO-60002"), ("SO-60003", "SO-60004")]


def test_minimal_route_with_only_picks_parses():
    """A route result with nothing but a list of bare picks parses."""
    result = parse_route({"picks": [{"pick_id": "b", "optim_sequence": 1}, {"pick_id": "a", "optim_sequence": 0}]})
    assert [p.pick_id for p in result.picks] == ["a", "b"]
    assert result.request_id is None
    assert not result.failed


def test_non_object_list_items_are_skipped():
    """Items of a result list that are not objects are left out instead of failing the parse."""
    doc = route_doc()
    doc["picks"].extend(["junk", 3, None])
    doc["invalid_picks"] = "not a list"
    result = parse_route(doc)
    assert len(result.picks) == len(ROUTE_DOC["picks"])
    assert result.invalid_picks == ()


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("computation_time", 2, 2.0),
        ("computation_time", "fast", None),
        ("computation_time", True, None),
        ("site_name", 42, "42"),
    ],
)
def test_header_fields_of_unexpected_type(field, value, expected):
    """Numbers may be int or float; a non-number becomes None and a non-string id is kept as text."""
    doc = route_doc()
    doc[field] = value
    assert getattr(parse_route(doc), field) == expected


# Unknown fields ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("parse", "make", "items"), [(parse_route, route_doc, "picks"), (parse_cluster, cluster_doc, "optimal_clusters")]
)
def test_unknown_fields_are_kept_in_raw(parse, make, items):
    """Fields the parser does not model are kept, at every level, in the result's raw document."""
    doc = make()
    doc["asis_respect_stop_conditions"] = True
    doc["future"] = {"nested": [1, 2]}
    doc[items][0]["new_item_field"] = "kept"
    result = parse(doc)
    assert result.raw["asis_respect_stop_conditions"] is True
    assert result.raw["future"] == {"nested": [1, 2]}
    assert result.raw[items][0]["new_item_field"] == "kept"
    assert result.raw["request_id"] == doc["request_id"]


# Cluster totals ------------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", ["drop", "null", "not-a-number"])
def test_cluster_totals_fall_back_to_the_sum_of_distances(missing):
    """Without asis_distance/optimal_distance, the totals are the sums of the clusters' estimated_distance."""
    doc = cluster_doc()
    for key in ("asis_distance", "optimal_distance"):
        if missing == "drop":
            del doc[key]
        else:
            doc[key] = None if missing == "null" else "n/a"
    # Make the sums differ from the fixture's totals, so the test tells a sum from a copied total.
    doc["optimal_clusters"][0]["estimated_distance"] = 1000
    doc["asis_clusters"][1]["estimated_distance"] = 500.5
    result = parse_cluster(doc)
    assert result.optimal_distance == pytest.approx(1000 + 4275.511264091337)
    assert result.asis_distance == pytest.approx(6120.481735519203 + 500.5)


def test_cluster_totals_in_the_document_win_over_the_sums():
    """Totals present in the document are used as they are, not recomputed."""
    doc = cluster_doc()
    doc["optimal_distance"] = 1
    doc["asis_distance"] = 2
    result = parse_cluster(doc)
    assert (result.optimal_distance, result.asis_distance) == (1.0, 2.0)


def test_cluster_totals_are_none_without_any_distance():
    """Without totals and without cluster distances, the totals are None rather than 0."""
    doc = cluster_doc()
    del doc["asis_distance"], doc["optimal_distance"]
    for cluster in doc["optimal_clusters"] + doc["asis_clusters"]:
        del cluster["estimated_distance"]
    result = parse_cluster(doc)
    assert (result.optimal_distance, result.asis_distance) == (None, None)


# Not a result, and failed results ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "doc"),
    [
        pytest.param(Kind.ROUTE, {"request_id": "abc"}, id="route-nothing"),
        pytest.param(Kind.ROUTE, {"request_id": "abc", "picks": None, "error": None}, id="route-nulls"),
        pytest.param(Kind.ROUTE, {"picks": "A01"}, id="route-picks-not-list"),
        pytest.param(Kind.ROUTE, {"optimal_clusters": []}, id="route-given-cluster-list"),
        pytest.param(Kind.CLUSTER, {"request_id": "abc"}, id="cluster-nothing"),
        pytest.param(Kind.CLUSTER, {"picks": []}, id="cluster-given-route-list"),
        pytest.param(Kind.CLUSTER, {"optimal_clusters": {"cluster_0": []}}, id="cluster-list-not-list"),
        pytest.param(Kind.ROUTE, {"detail": "Not Found"}, id="api-error-body"),
        pytest.param(Kind.ROUTE, [], id="json-array"),
        pytest.param(Kind.CLUSTER, "text", id="json-string"),
        pytest.param(Kind.CLUSTER, None, id="json-null"),
    ],
)
def test_document_without_error_or_result_list_is_refused(kind, doc):
    """A document with neither an error nor the kind's result list is not a result: ValueError."""
    with pytest.raises(ValueError, match="result"):
        parse_result(kind, doc)


@pytest.mark.parametrize(("kind", "items"), [(Kind.ROUTE, "picks"), (Kind.CLUSTER, "optimal_clusters")])
def test_error_without_result_list_parses_as_failed(kind, items):
    """A document with `error` set and no result list parses as a failed optimization."""
    result = parse_result(kind, {"request_id": "abc", "error": "No valid picks", "site_name": "Example"})
    assert result.failed
    assert result.error == "No valid picks"
    assert result.site_name == "Example"
    assert getattr(result, items) == ()
