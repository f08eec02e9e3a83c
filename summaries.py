"""The one-line summary of a fetched result: what the optimization achieved, in words.

The inbox keeps it with the event once done (`show` prints it), and the console handler logs it. The
API's own texts in it (the warehouse, the wave, the error) are made printable, so a result cannot
forge a log line or drive the terminal that shows it.
"""

from event_types import Event
from printable import printable
from results import ClusterResult, Result, RouteResult

MAX_CLUSTERS_LISTED = 20
NAME_LIMIT = 100  # characters of a warehouse or wave name
ERROR_LIMIT = 500  # characters of an optimization's error


def summary(event: Event, result: Result) -> str:
    warehouse = event.warehouse or result.site_name
    where = ", ".join(
        part
        for part in (
            printable(warehouse, limit=NAME_LIMIT) if warehouse else None,
            f"wave {printable(result.wave_id, limit=NAME_LIMIT)}" if result.wave_id else None,
        )
        if part
    )
    head = f"{event.kind} {event.request_id}" + (f" ({where})" if where else "")
    if result.error is not None:
        return f"{head}: optimization failed: {printable(result.error, limit=ERROR_LIMIT)}"
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
    unit = f" {printable(result.unit, limit=NAME_LIMIT)}" if result.unit else ""
    label = "optimized" if isinstance(result, RouteResult) else "optimal"
    text = f"distance {optimized:,.0f}{unit} {label} vs {asis:,.0f}{unit} as-is"
    if asis > 0:
        text += f", saving {(asis - optimized) / asis:.1%}"
    return text


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
