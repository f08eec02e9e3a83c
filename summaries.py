"""The one-line summary of a fetched result: what the optimization achieved, in words.

The inbox keeps it with the event once done (`show` prints it), and the console handler logs it.
"""

from event_types import Event
from results import ClusterResult, Result, RouteResult

MAX_CLUSTERS_LISTED = 20


def summary(event: Event, result: Result) -> str:
    where = ", ".join(
        part
        for part in (
            event.warehouse or result.site_name,
            f"wave {result.wave_id}" if result.wave_id else None,
        )
        if part
    )
    head = f"{event.kind} {event.request_id}" + (f" ({where})" if where else "")
    if result.error is not None:
        return f"{head}: optimization failed: {result.error}"
    if isinstance(result, RouteResult):
        body = f"{_count(len(result.picks), 'pick')}"
    else:
        body = f"{_count(len(result.optimal_clusters), 'cluster')}{_orders_per_cluster(result)}"
    if result.invalid_picks:
        body += f", {_count(len(result.invalid_picks), 'invalid pick')} left out"
    return f"{head}: {body}; {_distances(result)}"


def _orders_per_cluster(result: ClusterResult) -> str:
    if not result.optimal_clusters:
        return ""
    counts = [str(len(c.order_ids)) for c in result.optimal_clusters[:MAX_CLUSTERS_LISTED]]
    more = ", …" if len(result.optimal_clusters) > MAX_CLUSTERS_LISTED else ""
    return f" (orders per cluster: {', '.join(counts)}{more})"


def _distances(result: Result) -> str:
    optimized, asis = result.optimal_distance, result.asis_distance
    if optimized is None or asis is None:
        return "no distance totals in the result"
    unit = f" {result.unit}" if result.unit else ""
    label = "optimized" if isinstance(result, RouteResult) else "optimal"
    text = f"distance {optimized:,.0f}{unit} {label} vs {asis:,.0f}{unit} as-is"
    if asis > 0:
        text += f", saving {(asis - optimized) / asis:.1%}"
    return text


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
