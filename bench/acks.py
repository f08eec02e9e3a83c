"""Acknowledgement: the ceiling, the floor, this service and the inline baseline, side by side.

Every mode runs under the same gunicorn settings, behind the same generator, with freshly signed
deliveries and the stand-in API on loopback. Each mode's server is booted once per round and runs its
phases one after the other, the stand-in's delay changed in between (each phase with request ids of
its own, so none is a duplicate of the other's). The service runs as in production: gunicorn for
the web side plus `python main.py worker` (default WORKER_THREADS) processing what arrives, so its
figures include the worker competing for the same two cores and the same database. Modes are interleaved
round by round, so the machine's drift hits them alike; a mode's figures pool its rounds.
"""

import logging
import signal
import statistics
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import inboxdb, loadgen
from bench.common import Bench, next_tag, request_ids, stand_in
from bench.procs import Started, free_port, wait_healthy, wait_until

log = logging.getLogger("bench")


@dataclass(frozen=True)
class Mode:
    name: str
    label: str
    app: str  # gunicorn's APP_MODULE
    with_worker: bool  # also run `python main.py worker`
    uses_api: bool


CEILING = Mode("ceiling", "ceiling: bare Flask, reads the body, 204", "bench.apps:ceiling()", False, False)
FLOOR = Mode("floor", "floor: verify, group-committed durable insert, 204", "bench.apps:floor()", False, False)
SERVICE = Mode("service", "this service: verify, durable insert, enqueue, 200", "webapp:create_app()", True, True)
INLINE = Mode("inline", "inline baseline: verify, fetch from the API, 200", "bench.apps:inline()", False, True)


@dataclass(frozen=True)
class Phase:
    mode: Mode
    api_delay: float | None  # seconds; None where the mode never calls the API

    @property
    def key(self) -> str:
        if self.api_delay is None:
            return self.mode.name
        return f"{self.mode.name}@{round(self.api_delay * 1000)}ms"


def plan(slow_api: float) -> list[tuple[Mode, list[float | None]]]:
    """Each mode with the API delays it runs at: one server per mode, the delay changed in between."""
    return [(CEILING, [None]), (FLOOR, [None]), (SERVICE, [0.0, slow_api]), (INLINE, [0.0, slow_api])]


def run(bench: Bench, slow_api: float) -> dict[str, Any]:
    """Every phase, `bench.sizes.rounds` times interleaved; figures per phase key."""
    measured: dict[Phase, list[tuple[loadgen.LoadResult, dict[str, Any]]]] = {}
    for round_no in range(1, bench.sizes.rounds + 1):
        for mode, delays in plan(slow_api):
            log.info("acknowledgement: %s, round %d of %d", mode.name, round_no, bench.sizes.rounds)
            for phase, figures in run_mode(bench, mode, delays, round_no).items():
                measured.setdefault(phase, []).append(figures)
    return {phase.key: summarize(phase, runs) for phase, runs in measured.items()}


def run_mode(
    bench: Bench, mode: Mode, delays: list[float | None], round_no: int
) -> dict[Phase, tuple[loadgen.LoadResult, dict[str, Any]]]:
    """Boot the mode's server (and worker), then run one phase per API delay against it."""
    per_phase = bench.sizes.api_ids
    ids = request_ids(next_tag(), per_phase * len(delays))
    data = bench.dir(f"ack-{mode.name}-{round_no}")
    measured = {}
    probe_id = request_ids(next_tag(), 1)[0]
    with stand_in(0.0, (*ids, probe_id) if mode.uses_api else ()) as api, ExitStack() as stack:
        port = free_port()
        settings = bench.receiver_settings(data, api.url)
        web = bench.processes.start(f"{mode.name}-{round_no}", bench.server.args(port, mode.app), settings)
        worker = None
        if mode.with_worker:
            worker = bench.processes.start(f"{mode.name}-{round_no}-worker", ["main.py", "worker"], settings)
        watched = [p for p in (web, worker) if p is not None]
        # Each phase's deliveries are signed while the server boots.
        loads = [
            stack.enter_context(loadgen.Load(phase_spec(bench, port, ids[i * per_phase : (i + 1) * per_phase])))
            for i in range(len(delays))
        ]
        try:
            wait_healthy(web, port)
            if worker is not None:
                worker_ready(bench, port, data, probe_id, watched)
            for delay, load in zip(delays, loads, strict=True):
                phase = Phase(mode, delay)
                api.delay = delay or 0.0
                cpu_before = [p.cpu_seconds() for p in watched]
                result = load.run()
                cpu = [p.cpu_seconds() - before for p, before in zip(watched, cpu_before, strict=True)]
                for process in watched:
                    if not process.running():
                        raise RuntimeError(f"{process} exited during {phase.key}:\n{process.log_tail()}")
                if result.count == 0:
                    raise RuntimeError(f"{phase.key}: no request completed ({result.error_samples})")
                answered = result.count + load.spec.warmup * load.spec.total_connections  # CPU includes warm-up
                extra = {
                    "server_cpu_ms_per_request": cpu[0] / answered * 1000,
                    "server_cpu_share": cpu[0] / result.elapsed,  # rough: the warm-up is in it too
                }
                if worker is not None:
                    # What the worker cost beside the web side, and what it got through so far.
                    extra["worker_cpu_share"] = cpu[1] / result.elapsed
                    extra["inbox_after_phase"] = inboxdb.statuses(data / "inbox.db")
                measured[phase] = (result, extra)
        finally:
            for process in reversed(watched):
                process.stop(signal.SIGTERM)
    return measured


def worker_ready(bench: Bench, port: int, data: Path, request_id: str, watched: list[Started]) -> None:
    """Send one delivery and wait until the worker has processed it: the worker is up before any phase."""
    msg_id = f"msg_probe_{request_id}"
    status = loadgen.send_one(port, bench.secret, msg_id, request_id)
    if status != 200:
        raise RuntimeError(f"the service answered {status} to a signed delivery")
    wait_until(lambda: inboxdb.statuses(data / "inbox.db", msg_id).get("done"), "the worker to start", 120, watched)


def phase_spec(bench: Bench, port: int, ids: tuple[str, ...]) -> loadgen.LoadSpec:
    return loadgen.LoadSpec(
        port=port,
        secret=bench.secret,
        request_ids=ids,
        count=bench.sizes.phase_count,
        duration=bench.sizes.phase_seconds,
        msg_prefix=f"msg_bench{next_tag()}",
        processes=bench.generator_processes,
        connections=bench.connections,
        warmup=bench.sizes.warmup,
    )


def summarize(phase: Phase, runs: list[tuple[loadgen.LoadResult, dict[str, Any]]]) -> dict[str, Any]:
    pooled = loadgen.LoadResult(
        count=sum(r.count for r, _ in runs),
        elapsed=sum(r.elapsed for r, _ in runs),
        latencies=sorted(x for r, _ in runs for x in r.latencies),
        statuses=dict(sum((Counter(r.statuses) for r, _ in runs), Counter())),
        errors=sum(r.errors for r, _ in runs),
        loadgen_cpu_seconds=sum(r.loadgen_cpu_seconds for r, _ in runs),
    )

    def mean(key: str) -> float:
        return round(statistics.fmean(extra[key] for _, extra in runs), 3)

    summary = {
        "mode": phase.mode.name,
        "label": phase.mode.label,
        "api_delay_ms": None if phase.api_delay is None else round(phase.api_delay * 1000),
        **pooled.summary(),
        "rounds_requests_per_s": [round(r.rate, 1) for r, _ in runs],
        "server_cpu_ms_per_request": mean("server_cpu_ms_per_request"),
        "server_cpu_share": mean("server_cpu_share"),
        "latency_sample_ms": _sample(pooled.latencies),
    }
    if phase.mode.with_worker:
        summary["worker_cpu_share"] = mean("worker_cpu_share")
        summary["inbox_after_phase"] = [extra["inbox_after_phase"] for _, extra in runs]
    return summary


def _sample(latencies: list[float], points: int = 200) -> list[float]:
    """Evenly spaced quantiles of the latencies (ms), enough to draw their distribution."""
    if not latencies:
        return []
    n = len(latencies)
    return [round(latencies[min(n - 1, int(i * n / points))] * 1000, 3) for i in range(points)] + [
        round(latencies[-1] * 1000, 3)
    ]
