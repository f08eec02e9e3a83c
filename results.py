"""Typed, lenient views of OptiPick's route and cluster results.

Two versions of the API docs exist and real responses carry a subset of either, so parsing keeps
what it recognises, tolerates missing or null optional fields, and keeps the whole document in
`raw` for anything it does not model. Only two things are essential: the `error` field or the
result list (`picks` for a route, `optimal_clusters` for a cluster); without both, the document
is not a result and parsing raises ValueError.
"""

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from event_types import Kind

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InvalidPick:
    pick_id: str | None
    reason: str | None


@dataclass(frozen=True)
class RoutePick:
    pick_id: str | None
    location_ids: tuple[str, ...]
    optim_sequence: int | None
    asis_sequence: int | None
    order_id: str | None
    sku_id: str | None
    quantity: float | None


@dataclass(frozen=True)
class Cluster:
    list_id: str | None
    order_ids: tuple[str, ...]
    pick_count: int
    estimated_distance: float | None


@dataclass(frozen=True)
class _Header:
    """Fields both result kinds share."""

    request_id: str | None
    site_name: str | None
    site_id: str | None
    wave_id: str | None
    owner_id: str | None
    timestamp: str | None
    computation_time: float | None
    error: str | None
    unit: str | None
    invalid_picks: tuple[InvalidPick, ...]
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @property
    def failed(self) -> bool:
        return self.error is not None


@dataclass(frozen=True)
class RouteResult(_Header):
    kind = Kind.ROUTE
    route_id: str | None = None
    picks: tuple[RoutePick, ...] = ()  # in walking order (sorted by optim_sequence)
    # The docs do not promise route totals; these are read when present under the cluster's names.
    asis_distance: float | None = None
    optimal_distance: float | None = None


@dataclass(frozen=True)
class ClusterResult(_Header):
    kind = Kind.CLUSTER
    optimal_clusters: tuple[Cluster, ...] = ()
    asis_clusters: tuple[Cluster, ...] = ()
    asis_distance: float | None = None
    optimal_distance: float | None = None


Result = RouteResult | ClusterResult


def parse_result(kind: Kind, document: Any) -> Result:
    """Parse a result document of the given kind; ValueError when it is not a result at all."""
    if not isinstance(document, Mapping):
        raise ValueError(f"{kind} result is not a JSON object")
    if kind is Kind.ROUTE:
        return parse_route(document)
    return parse_cluster(document)


def parse_route(doc: Mapping[str, Any]) -> RouteResult:
    _require_outcome(doc, "picks")
    picks = [_route_pick(p) for p in _objects(doc, "picks")]
    # Sort by the optimised position; the API does not promise the list arrives in order.
    picks.sort(key=lambda p: (p.optim_sequence is None, p.optim_sequence or 0))
    return RouteResult(
        **_header(doc),
        route_id=_text(doc.get("route_id")),
        picks=tuple(picks),
        asis_distance=_number(doc.get("asis_distance")),
        optimal_distance=_number(doc.get("optimal_distance")),
    )


def parse_cluster(doc: Mapping[str, Any]) -> ClusterResult:
    _require_outcome(doc, "optimal_clusters")
    optimal = tuple(_cluster(c) for c in _objects(doc, "optimal_clusters"))
    asis = tuple(_cluster(c) for c in _objects(doc, "asis_clusters"))
    return ClusterResult(
        **_header(doc),
        optimal_clusters=optimal,
        asis_clusters=asis,
        # Observed responses carry the totals; when absent, they are the sums of the clusters' distances.
        asis_distance=_number_or(doc.get("asis_distance"), _total(asis)),
        optimal_distance=_number_or(doc.get("optimal_distance"), _total(optimal)),
    )


def _require_outcome(doc: Mapping[str, Any], result_list: str) -> None:
    if doc.get("error") is None and not isinstance(doc.get(result_list), list):
        raise ValueError(f"result has neither 'error' nor '{result_list}'")


def _header(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "request_id": _text(doc.get("request_id")),
        "site_name": _text(doc.get("site_name")),
        "site_id": _text(doc.get("site_id")),
        "wave_id": _text(doc.get("wave_id")),
        "owner_id": _text(doc.get("ownerId")),
        "timestamp": _text(doc.get("timestamp")),
        "computation_time": _number(doc.get("computation_time")),
        "error": _text(doc.get("error")),
        "unit": _text(doc.get("unit")),
        "invalid_picks": tuple(
            InvalidPick(_text(p.get("pick_id")), _text(p.get("reason"))) for p in _objects(doc, "invalid_picks")
        ),
        "raw": doc,
    }


def _route_pick(p: Mapping[str, Any]) -> RoutePick:
    return RoutePick(
        pick_id=_text(p.get("pick_id")),
        location_ids=_texts(p.get("location_id")),
        optim_sequence=_integer(p.get("optim_sequence")),
        asis_sequence=_integer(p.get("asis_sequence")),
        order_id=_text(p.get("order_id")),
        sku_id=_text(p.get("sku_id")),
        quantity=_number(p.get("quantity")),
    )


def _cluster(c: Mapping[str, Any]) -> Cluster:
    picks = _objects(c, "picks")
    order_ids = _texts(c.get("order_ids"))
    if not order_ids:  # fall back to the picks' orders, in order of first appearance
        order_ids = tuple(dict.fromkeys(o for p in picks if (o := _text(p.get("order_id"))) is not None))
    return Cluster(_text(c.get("list_id")), order_ids, len(picks), _number(c.get("estimated_distance")))


def _total(clusters: tuple[Cluster, ...]) -> float | None:
    distances = [c.estimated_distance for c in clusters if c.estimated_distance is not None]
    return sum(distances) if distances else None


def _objects(doc: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = doc.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        log.warning("result field %r is not a list; ignoring it", key)
        return []
    return [item for item in value if isinstance(item, Mapping)]


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value if isinstance(value, str) else str(value)


def _texts(value: Any) -> tuple[str, ...]:
    """A location id or order id list: documented both as a single string and as a list."""
    if value is None:
        return ()
    if isinstance(value, list):
        return tuple(str(v) for v in value if v is not None)
    return (str(value),)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _number_or(value: Any, fallback: float | None) -> float | None:
    number = _number(value)
    return fallback if number is None else number


def _integer(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None else None
