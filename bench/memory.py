"""Memory: the resident size of `python main.py` (web server and embedded worker in one process)
while it receives and processes a stream of deliveries.

The process runs for as long as the service is up, so what matters is that its memory levels off:
a leak per delivery shows as growth after the warm-up. The bench polls VmRSS and VmHWM in
/proc/<pid>/status, and the inbox's `done` count, and reports the peak and the resident size when
25, 50, 75 and 100 % of the deliveries were done.
"""

import logging
import signal
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from bench import inboxdb, loadgen
from bench.common import Bench, next_tag, request_ids, stand_in
from bench.procs import free_port, wait_healthy, wait_until

log = logging.getLogger("bench")

POLL_SECONDS = 0.2
CHECKPOINTS = (25, 50, 75, 100)


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (the peak) of a process, in kB."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0])
    return values


class Sampler(threading.Thread):
    """Polls a process's memory and the inbox's done count until stopped."""

    def __init__(self, pid: int, db: Path) -> None:
        super().__init__(name="memory-sampler", daemon=True)
        self.pid = pid
        self.db = db
        self.samples: list[tuple[float, int, int, int]] = []  # (seconds, done, VmRSS kB, VmHWM kB)
        self.stopping = threading.Event()
        self.started_at = time.monotonic()

    def run(self) -> None:
        while not self.stopping.is_set():
            self.sample()
            self.stopping.wait(POLL_SECONDS)

    def sample(self) -> None:
        try:
            memory = memory_kb(self.pid)
            done = inboxdb.statuses(self.db).get("done", 0)
        except (OSError, ValueError, sqlite3.Error):
            return  # the process is gone, or its tables are not there yet
        self.samples.append((time.monotonic() - self.started_at, done, memory["VmRSS"], memory["VmHWM"]))

    def stop(self) -> None:
        self.stopping.set()
        if self.is_alive():
            self.join(timeout=10)


def run(bench: Bench) -> dict[str, Any]:
    n = bench.sizes.memory_deliveries
    tag = next_tag()
    ids = request_ids(tag, n)
    data = bench.dir("memory")
    with stand_in(0.0, ids) as api:
        port = free_port()
        settings = bench.receiver_settings(data, api.url, HOST="127.0.0.1", PORT=str(port))
        spec = loadgen.backlog(port, bench.secret, ids, f"msg_mem{tag}", duration=600)
        receiver = bench.processes.start("memory-main", ["main.py"], settings)
        sampler = Sampler(receiver.pid, data / "inbox.db")
        try:
            with loadgen.Load(spec) as load:  # signs while the receiver starts
                wait_healthy(receiver, port)
                sampler.start()
                log.info("memory: %d deliveries to python main.py", n)
                sent = load.run()
            if not sent.acknowledged_all(n):
                raise RuntimeError(
                    f"not every delivery was acknowledged: {sent.summary()} {sent.error_samples}:\n"
                    f"{receiver.log_tail()}"
                )
            wait_until(
                lambda: inboxdb.settled(data / "inbox.db") >= n,
                f"{n} deliveries to be processed",
                timeout=600,
                watch=[receiver],
            )
            sampler.stop()
            sampler.sample()
        finally:
            sampler.stop()
            receiver.stop(signal.SIGINT)
    return figures(sampler.samples, n, inboxdb.statuses(data / "inbox.db"), sent)


def figures(samples: list[tuple[float, int, int, int]], n: int, statuses: dict[str, int], sent: Any) -> dict[str, Any]:
    if not samples:
        raise RuntimeError("no memory sample was taken")
    at: dict[str, float] = {}
    for percent in CHECKPOINTS:
        reached = next((s for s in samples if s[1] >= n * percent / 100), samples[-1])
        at[f"{percent}%"] = round(reached[2] / 1024, 1)
    peak = max(s[3] for s in samples) / 1024
    return {
        "deliveries": n,
        "idle_rss_mb": round(samples[0][2] / 1024, 1),
        "peak_rss_mb": round(peak, 1),
        "rss_mb_at_done": at,
        "growth_after_warmup": round(at["100%"] / at["25%"] - 1, 3),
        "seconds": round(samples[-1][0], 1),
        "intake_requests_per_s": round(sent.rate, 1),
        "statuses": statuses,
        "samples": len(samples),
    }
