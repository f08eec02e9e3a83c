"""Event types: every form EventType.parse accepts or rejects, and the order in which a delivery's type is resolved."""

import pytest

from event_types import MAX_TYPE_LENGTH, EventType, Kind, Resolution, resolve

USER = "673f48095739843f4de65ec9"


@pytest.mark.parametrize(
    ("text", "kind", "warehouse", "user_id", "canonical"),
    [
        ("route.optimized", Kind.ROUTE, None, None, "route.optimized"),
        ("cluster.optimized", Kind.CLUSTER, None, None, "cluster.optimized"),
        (f"route.optimized.Example.{USER}", Kind.ROUTE, "Example", USER, f"route.optimized.Example.{USER}"),
        (f"cluster.optimized.Example.{USER}", Kind.CLUSTER, "Example", USER, f"cluster.optimized.Example.{USER}"),
        ("route", Kind.ROUTE, None, None, "route.optimized"),
        ("ROUTE", Kind.ROUTE, None, None, "route.optimized"),
        ("Cluster", Kind.CLUSTER, None, None, "cluster.optimized"),
        ("cLuStEr", Kind.CLUSTER, None, None, "cluster.optimized"),
        (f"route.optimized.Site.A.1.{USER}", Kind.ROUTE, "Site.A.1", USER, f"route.optimized.Site.A.1.{USER}"),
        ("cluster.optimized.Main Warehouse.user_1-x", Kind.CLUSTER, "Main Warehouse", "user_1-x", None),
    ],
)
def test_parse_accepts_every_form(text, kind, warehouse, user_id, canonical):
    """Each documented form, a bare kind in any case, and a warehouse with dots parse to kind, warehouse and user id."""
    parsed = EventType.parse(text)
    assert parsed == EventType(kind, warehouse, user_id)
    assert str(parsed) == (canonical or text)


def test_parse_accepts_the_longest_allowed_type():
    """A warehouse-specific type of exactly MAX_TYPE_LENGTH characters is accepted."""
    prefix = "route.optimized."
    warehouse = "W" * (MAX_TYPE_LENGTH - len(prefix) - 1 - len(USER))
    text = f"{prefix}{warehouse}.{USER}"
    assert len(text) == MAX_TYPE_LENGTH
    assert EventType.parse(text) == EventType(Kind.ROUTE, warehouse, USER)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("", id="empty"),
        pytest.param(f"route.optimized.{'W' * (MAX_TYPE_LENGTH - 16 - 1 - 24 + 1)}.{USER}", id="too-long"),
        pytest.param("x" * 10_000, id="very-long"),
        pytest.param("order.optimized", id="unknown-kind"),
        pytest.param("route.created", id="unknown-action"),
        pytest.param("route.optimised", id="misspelt"),
        pytest.param("svix.ping", id="other-product"),
        pytest.param("ROUTE.OPTIMIZED", id="uppercase-general"),
        pytest.param("route.optimized.Example", id="missing-user-id"),
        pytest.param("route.optimized.Example.", id="empty-user-id"),
        pytest.param("route.optimized.", id="empty-suffix"),
        pytest.param("route.optimized..", id="empty-warehouse-and-user"),
        pytest.param(f"route.optimized..{USER}", id="empty-warehouse"),
        pytest.param("route.optimized.Example.bad id", id="user-id-with-space"),
        pytest.param("route.optimized.Example.id/../x", id="user-id-with-slash"),
        pytest.param(" route.optimized", id="leading-space"),
        pytest.param("routes", id="not-a-kind"),
    ],
)
def test_parse_rejects(text):
    """Text that is not an OptiPick optimization type parses to None."""
    assert EventType.parse(text) is None


ROUTE = EventType(Kind.ROUTE)
CLUSTER = EventType(Kind.CLUSTER)
WAREHOUSE_CLUSTER = EventType(Kind.CLUSTER, "Example", USER)


@pytest.mark.parametrize(
    ("payload", "path_type", "default", "expected"),
    [
        pytest.param(
            {"type": "cluster.optimized"},
            ROUTE,
            ROUTE,
            Resolution("cluster.optimized", CLUSTER, "payload"),
            id="payload",
        ),
        pytest.param(
            {"event_type": "CLUSTER"}, ROUTE, None, Resolution("cluster.optimized", CLUSTER, "payload"), id="event_type"
        ),
        pytest.param(
            {"eventType": f"cluster.optimized.Example.{USER}"},
            None,
            ROUTE,
            Resolution(str(WAREHOUSE_CLUSTER), WAREHOUSE_CLUSTER, "payload"),
            id="eventType",
        ),
        pytest.param(
            {"type": "cluster", "event_type": "route", "eventType": "route"},
            None,
            None,
            Resolution("cluster.optimized", CLUSTER, "payload"),
            id="type-first",
        ),
        pytest.param(
            {"event_type": "cluster", "eventType": "route"},
            None,
            None,
            Resolution("cluster.optimized", CLUSTER, "payload"),
            id="event_type-before-eventType",
        ),
        pytest.param({}, CLUSTER, ROUTE, Resolution("cluster.optimized", CLUSTER, "path"), id="path-over-default"),
        pytest.param({}, None, CLUSTER, Resolution("cluster.optimized", CLUSTER, "default"), id="default"),
        pytest.param({}, None, None, Resolution(None, None, None), id="nothing"),
        pytest.param({"type": ""}, CLUSTER, None, Resolution("cluster.optimized", CLUSTER, "path"), id="empty-type"),
        pytest.param({"type": 7}, None, CLUSTER, Resolution("cluster.optimized", CLUSTER, "default"), id="number-type"),
        pytest.param({"type": None}, CLUSTER, ROUTE, Resolution("cluster.optimized", CLUSTER, "path"), id="null-type"),
        pytest.param({"type": "svix.ping"}, ROUTE, ROUTE, Resolution("svix.ping", None, "payload"), id="unknown-wins"),
    ],
)
def test_resolve_priority(payload, path_type, default, expected):
    """The payload's type fields (type, event_type, eventType) win over the URL path, the path over the default."""
    assert resolve(payload, path_type, default) == expected


def test_resolve_unknown_payload_type_is_ignored_and_cut_short():
    """An unknown payload type marks the delivery ignored, with its name kept to MAX_TYPE_LENGTH characters."""
    resolution = resolve({"type": "x" * 1000}, ROUTE, None)
    assert resolution.ignored
    assert resolution.name == "x" * (MAX_TYPE_LENGTH - 1) + "…"
    assert resolution.event_type is None


def test_resolve_nothing_given_is_not_ignored():
    """Without any type the delivery is not ignored: the worker will ask the API."""
    assert not resolve({"request_id": "abc"}, None, None).ignored
