"""A closed-loop HTTP load generator for a server on loopback, replaying freshly signed deliveries.

Pure Python, so the bench needs no system package (wrk would need apt in CI): several processes, so
the generator is not held back by one GIL, each with a few threads holding one keep-alive
`http.client` connection each. Every delivery has its own svix-id and is signed with the svix
library, with the current time, by the process that sends it, just before the phase starts (the
signature window is 5 minutes; a phase lasts seconds).

Each connection first sends a few unmeasured warm-up deliveries, then all connections start together
(a barrier) and each sends its share until the share is used up or the phase's deadline passes: the
load is bounded in count and in time and stops by itself. Only 127.0.0.1 is ever addressed.
"""

import http.client
import json
import multiprocessing
import os
import threading
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from signatures import signed_headers

HOST = "127.0.0.1"
# Seconds to wait for the go, and then for the warm-up, before giving up on a phase (the signatures
# stay valid for 5 minutes).
SETUP_TIMEOUT = 240.0


@dataclass(frozen=True)
class LoadSpec:
    port: int
    secret: str
    request_ids: tuple[str, ...]  # cycled through: delivery i carries request_ids[i % len]
    count: int  # measured deliveries at most, all connections together
    duration: float  # seconds at most for the measured part
    msg_prefix: str  # makes this phase's svix-ids distinct from every other phase's
    processes: int = 2
    connections: int = 8  # per process
    warmup: int = 10  # unmeasured deliveries per connection, before the barrier
    path: str = "/webhook/route"
    timeout: float = 30.0  # seconds for one request

    @property
    def total_connections(self) -> int:
        return self.processes * self.connections


@dataclass
class LoadResult:
    """What one phase measured. Latencies are in seconds, sorted."""

    count: int
    elapsed: float
    latencies: list[float]
    statuses: dict[int, int]
    errors: int
    loadgen_cpu_seconds: float
    error_samples: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.count / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def non_2xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if not 200 <= status < 300)

    def acknowledged_all(self, n: int) -> bool:
        """Whether exactly `n` deliveries were sent and every one was answered 2xx."""
        return self.count == n and not self.non_2xx and not self.errors

    def summary(self) -> dict[str, Any]:
        return {
            "requests": self.count,
            "seconds": round(self.elapsed, 3),
            "requests_per_s": round(self.rate, 1),
            "p50_ms": round(percentile(self.latencies, 50) * 1000, 2),
            "p90_ms": round(percentile(self.latencies, 90) * 1000, 2),
            "p99_ms": round(percentile(self.latencies, 99) * 1000, 2),
            "max_ms": round(percentile(self.latencies, 100) * 1000, 2),
            "non_2xx": self.non_2xx,
            "errors": self.errors,
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "loadgen_cpu_share": round(self.loadgen_cpu_seconds / self.elapsed, 3) if self.elapsed else None,
        }


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of sorted values."""
    if not ordered:
        return float("nan")
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def backlog(port: int, secret: str, ids: tuple[str, ...], msg_prefix: str, duration: float) -> LoadSpec:
    """One delivery per request id in `ids`, over four connections of one process, with no warm-up."""
    return LoadSpec(port, secret, ids, len(ids), duration, msg_prefix, processes=1, connections=4, warmup=0)


def delivery_body(request_id: str) -> str:
    return json.dumps({"type": "route.optimized", "request_id": request_id})


def delivery(secret: str, msg_id: str, request_id: str) -> tuple[str, dict[str, str]]:
    """A route delivery's body and the headers Svix sends with it (a user-agent too), signed now."""
    body = delivery_body(request_id)
    return body, signed_headers(secret, body, msg_id) | {"user-agent": "Svix-Webhooks/1.0 (bench)"}


def send_one(port: int, secret: str, msg_id: str, request_id: str, path: str = "/webhook/route") -> int:
    """POST one signed delivery to 127.0.0.1:`port`; return the HTTP status."""
    connection = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        connection.request("POST", path, *delivery(secret, msg_id, request_id))
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


class Load:
    """One phase's generator processes. They start and sign at once (while the server boots, say),
    and send nothing until `run()`; `close()` ends them whatever happened."""

    def __init__(self, spec: LoadSpec) -> None:
        self.spec = spec
        context = multiprocessing.get_context("spawn")  # no fork of a parent that runs server threads
        self.go = context.Event()
        self.barrier = context.Barrier(spec.total_connections + 1)
        self.results = context.Queue()
        self.processes = [
            context.Process(target=_process_main, args=(spec, index, self.go, self.barrier, self.results), daemon=True)
            for index in range(spec.processes)
        ]
        for process in self.processes:
            process.start()

    def __enter__(self) -> "Load":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self) -> LoadResult:
        """Warm up, then run the measured part; return what it measured."""
        self.go.set()
        _wait_ready(self.barrier, self.spec.total_connections, self.processes)
        self.barrier.wait(timeout=10)
        timeout = self.spec.duration + self.spec.timeout + 30
        return _combine([self.results.get(timeout=timeout) for _ in self.processes])

    def close(self) -> None:
        self.barrier.abort()  # frees any connection still waiting, when the phase failed to start
        for process in self.processes:
            process.join(timeout=10 if self.go.is_set() else 0.1)
            if process.is_alive():
                process.terminate()
                process.join(timeout=10)


def _wait_ready(barrier: Any, parties: int, processes: list[Any]) -> None:
    """Wait until every connection has warmed up, failing at once when a generator process died."""
    deadline = time.monotonic() + SETUP_TIMEOUT
    while barrier.n_waiting < parties:
        if any(process.exitcode is not None for process in processes):
            raise RuntimeError("a load generator process exited before the phase started")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the load generator was not ready after {SETUP_TIMEOUT:.0f} s")
        time.sleep(0.02)


def _combine(parts: list[dict[str, Any]]) -> LoadResult:
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    starts, ends, samples = [], [], []
    errors = 0
    cpu = 0.0
    for part in parts:
        latencies.extend(part["latencies"])
        statuses.update(part["statuses"])
        errors += part["errors"]
        cpu += part["cpu"]
        samples.extend(part["error_samples"])
        if part["start"] is not None:
            starts.append(part["start"])
            ends.append(part["end"])
    latencies.sort()
    elapsed = (max(ends) - min(starts)) if starts else 0.0
    return LoadResult(len(latencies), elapsed, latencies, dict(statuses), errors, cpu, samples[:5])


def _process_main(spec: LoadSpec, index: int, go: Any, barrier: Any, results: Any) -> None:
    """One generator process: sign its share, wait for the go, then run one thread per connection."""
    lanes = [_Lane(spec, index * spec.connections + c) for c in range(spec.connections)]
    if not go.wait(timeout=SETUP_TIMEOUT):
        return
    cpu_before = time.process_time()
    threads = [threading.Thread(target=lane.run, args=(barrier,), daemon=True) for lane in lanes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    measured = [lane for lane in lanes if lane.start is not None]
    latencies = array("d")
    statuses: Counter[int] = Counter()
    for lane in lanes:
        latencies.extend(lane.latencies)
        statuses.update(lane.statuses)
    results.put(
        {
            "latencies": latencies.tolist(),
            "statuses": dict(statuses),
            "errors": sum(lane.errors for lane in lanes),
            "error_samples": [s for lane in lanes for s in lane.error_samples][:5],
            "start": min((lane.start for lane in measured), default=None),
            "end": max((lane.end for lane in measured), default=None),
            # Signing and warm-up included: an upper bound of what the generator took.
            "cpu": time.process_time() - cpu_before,
            "pid": os.getpid(),
        }
    )


class _Lane:
    """One keep-alive connection and the deliveries it sends."""

    def __init__(self, spec: LoadSpec, lane: int) -> None:
        self.spec = spec
        stride = spec.total_connections
        ids = spec.request_ids

        # Measured delivery i carries ids[i]; warm-up ones take ids from the other end, so that no two
        # deliveries share a request id (which would make the later one a duplicate) before wrapping.
        self.warmup = [
            delivery(spec.secret, f"{spec.msg_prefix}_w{lane}_{i}", ids[-1 - (lane * spec.warmup + i) % len(ids)])
            for i in range(spec.warmup)
        ]
        self.measured = [
            delivery(spec.secret, f"{spec.msg_prefix}_m{i}", ids[i % len(ids)]) for i in range(lane, spec.count, stride)
        ]
        self.latencies = array("d")
        self.statuses: Counter[int] = Counter()
        self.errors = 0
        self.error_samples: list[str] = []
        self.start: float | None = None
        self.end: float | None = None

    def run(self, barrier: Any) -> None:
        connection = http.client.HTTPConnection(HOST, self.spec.port, timeout=self.spec.timeout)
        try:
            for body, headers in self.warmup:
                self._send(connection, body, headers)
            self.latencies = array("d")
            self.statuses.clear()
            self.errors = 0
            barrier.wait(timeout=SETUP_TIMEOUT)
            self.start = self.end = time.monotonic()
            deadline = self.start + self.spec.duration
            for body, headers in self.measured:
                if time.monotonic() >= deadline:
                    break
                self._send(connection, body, headers)
        finally:
            connection.close()

    def _send(self, connection: http.client.HTTPConnection, body: str, headers: dict[str, str]) -> None:
        started = time.monotonic()
        try:
            connection.request("POST", self.spec.path, body, headers)
            response = connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as exc:
            connection.close()  # the next request opens a new connection
            self.errors += 1
            if len(self.error_samples) < 3:
                self.error_samples.append(f"{type(exc).__name__}: {exc}")
            return
        self.end = time.monotonic()
        self.latencies.append(self.end - started)
        self.statuses[response.status] += 1
