"""End-to-end processing rate: how many deliveries per second reach `done` when every fetch takes
the API `delay`, with WORKER_THREADS = 1, 4 and 16, against the ideal of threads / delay.

For each thread count a backlog is delivered through gunicorn first (the same web side as in the
acknowledgement phases), then `python main.py worker` is started and works through it. The rate is
read from the inbox's own finish times: deliveries finished after the first round of fetches, over
the time they took, so the worker's start-up is left out and a perfect worker scores exactly ideal.
"""

import logging
import signal
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench import inboxdb, loadgen
from bench.common import Bench, next_tag, request_ids, stand_in
from bench.procs import Started, free_port, wait_healthy, wait_until

log = logging.getLogger("bench")

THREADS = (1, 4, 16)


def run(bench: Bench, delay: float) -> dict[str, Any]:
    tag = next_tag()
    per_thread = bench.sizes.e2e_rounds
    ids = request_ids(tag, sum(THREADS) * per_thread)
    data = bench.dir("e2e")
    figures: dict[str, Any] = {"api_delay_ms": round(delay * 1000), "by_threads": {}}
    with stand_in(delay, ids) as api, ExitStack() as stack:
        port = free_port()
        settings = bench.receiver_settings(data, api.url)
        web = bench.processes.start("e2e-web", bench.server.args(port, "webapp:create_app()"), settings)
        batches = []
        offset = 0
        for threads in THREADS:  # each backlog is signed while the server boots
            batch = ids[offset : offset + threads * per_thread]
            offset += len(batch)
            prefix = f"msg_e2e{tag}t{threads}"
            load = stack.enter_context(loadgen.Load(loadgen.backlog(port, bench.secret, batch, prefix, duration=120)))
            batches.append((threads, batch, prefix, load))
        try:
            wait_healthy(web, port)
            for threads, batch, prefix, load in batches:
                log.info("end-to-end: %d deliveries, WORKER_THREADS=%d", len(batch), threads)
                acknowledged = load.run()
                if not acknowledged.acknowledged_all(len(batch)):
                    raise RuntimeError(
                        f"the backlog was not fully acknowledged: {acknowledged.summary()} "
                        f"{acknowledged.error_samples}; {web} {'runs' if web.running() else 'has exited'}:\n"
                        f"{web.log_tail()}"
                    )
                worker = bench.processes.start(
                    f"e2e-worker-{threads}", ["main.py", "worker"], {**settings, "WORKER_THREADS": str(threads)}
                )
                glob, n = f"{prefix}_*", len(batch)
                try:
                    cpu = work_through(data / "inbox.db", glob, n, worker, timeout=4 * n * delay / threads + 60)
                finally:
                    worker.stop(signal.SIGTERM)
                figures["by_threads"][str(threads)] = rate(data, glob, threads, delay, n) | cpu
        finally:
            web.stop(signal.SIGTERM)
    return figures


def work_through(db: Path, glob: str, n: int, worker: Started, timeout: float) -> dict[str, float]:
    """Wait until the worker has settled all `n` messages; return its CPU time per delivery, counted
    from its first finished delivery on (so its start-up is left out)."""
    first: list[tuple[float, int, float]] = []  # (CPU seconds, settled, monotonic) at the first settled

    def all_settled() -> bool:
        settled = inboxdb.settled(db, glob)
        if not first and settled:
            first.append((worker.cpu_seconds(), settled, time.monotonic()))
        return settled >= n

    wait_until(all_settled, f"{worker} to process {n} deliveries", timeout, watch=[worker])
    if not first or first[0][1] >= n:
        return {}
    cpu_before, settled_before, since = first[0]
    cpu = worker.cpu_seconds() - cpu_before
    return {
        "worker_cpu_ms_per_delivery": round(cpu / (n - settled_before) * 1000, 2),
        "worker_cpu_share": round(cpu / (time.monotonic() - since), 2),
    }


def rate(data: Path, glob: str, threads: int, delay: float, n: int) -> dict[str, Any]:
    statuses = inboxdb.statuses(data / "inbox.db", glob)
    times = inboxdb.finish_times(data / "inbox.db", glob)
    if len(times) != n:
        raise RuntimeError(f"{n - len(times)} of {n} deliveries did not reach done: {statuses}")
    # After the first `threads` finish (the first round of fetches), each further one is a full fetch.
    span = (times[-1] - times[threads - 1]).total_seconds()
    measured = (n - threads) / span if span > 0 else float("inf")
    ideal = threads / delay
    return {
        "deliveries": n,
        "deliveries_per_s": round(measured, 1),
        "ideal_per_s": round(ideal, 1),
        "share_of_ideal": round(measured / ideal, 3),
        "seconds": round((times[-1] - times[0]).total_seconds(), 2),
        "statuses": statuses,
    }
