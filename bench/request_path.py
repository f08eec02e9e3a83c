"""What each step of the acknowledgement costs, in one process, one thread: where the time goes
against the "throughput ≥ 60 % of the ceiling" target.

    .venv/bin/python -m bench.request_path      writes bench/results/request-path.md

For this service to reach 60 % of the bare endpoint's rate, a request may cost at most 1/0.6 = 1.67
times what the bare endpoint costs, so the steps only this service takes (verify, read the payload,
the durable insert, the enqueue) must fit in 0.67 × the ceiling's cost per request. Each step is
timed here on its own, as the median of many runs.
"""

import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import new_secret
from config import load_settings
from inbox import Inbox, NewDelivery
from intake import read_delivery
from signatures import SignatureVerifier, signed_headers
from work_queue import WorkQueue, close_huey, create_huey

RUNS = 2000
RESULTS = Path(__file__).resolve().parent / "results" / "request-path.md"
# CPU per request of the bare endpoint under gunicorn, from the full run's table (bench/results/latest.json).
LATEST = Path(__file__).resolve().parent / "results" / "latest.json"


def median_ms(step: Callable[[int], object], runs: int = RUNS) -> float:
    times = []
    for i in range(runs):
        started = time.perf_counter()
        step(i)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def measure() -> dict[str, float]:
    secret = new_secret()
    verifier = SignatureVerifier([secret])
    body = json.dumps({"type": "route.optimized", "request_id": "67d3f1a95e593173d0a1b2c4"})
    headers = signed_headers(secret, "msg_bench_0", body)
    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings(
            {"WEBHOOK_SECRET": secret, "OPTIPICK_API_KEY": "k", "QUEUE_URL": f"sqlite:///{folder}/queue.db"},
            env_file=None,
        )
        full = Inbox.open(f"sqlite:///{folder}/full.db")
        unsynced = Inbox.open(f"sqlite:///{folder}/off.db")
        with unsynced.engine.connect() as conn:  # the same insert without waiting for the disk: its CPU
            conn.exec_driver_sql("PRAGMA synchronous=OFF")
        queue = WorkQueue(create_huey(settings.queue_url))

        def delivery(i: int, prefix: str) -> NewDelivery:
            return read_delivery(f"msg_{prefix}_{i}", body.encode(), headers, None, None)

        costs = {
            "verify the signature (svix)": median_ms(lambda i: verifier.verify(body.encode(), headers)),
            "read the payload (intake)": median_ms(lambda i: delivery(i, "read")),
            "insert, synchronous=OFF (its CPU)": median_ms(lambda i: unsynced.add(delivery(i, "off"))),
            "insert, synchronous=FULL (as served)": median_ms(lambda i: full.add(delivery(i, "full"))),
            "enqueue (Huey, SQLite)": median_ms(lambda i: queue.enqueue(i)),
        }
        full.close()
        unsynced.close()
        close_huey(queue.huey)
    return costs


@dataclass(frozen=True)
class FullRun:
    """What the last full run (bench/results/latest.json) measured under gunicorn."""

    ceiling_cpu_ms: float  # server CPU per request
    ceiling_rate: float  # requests/s
    floor_cpu_ms: float
    service_cpu_ms: float  # the lower of its two phases


def full_run_figures() -> FullRun | None:
    try:
        acks = json.loads(LATEST.read_text())["results"]["acknowledgement"]
        service = min(acks[key]["server_cpu_ms_per_request"] for key in acks if key.startswith("service@"))
        return FullRun(
            acks["ceiling"]["server_cpu_ms_per_request"],
            acks["ceiling"]["requests_per_s"],
            acks["floor"]["server_cpu_ms_per_request"],
            service,
        )
    except (OSError, KeyError, TypeError, ValueError):
        return None


def report(costs: dict[str, float], full_run: FullRun | None) -> str:
    lines = [
        "# The acknowledgement, step by step",
        "",
        f"Median of {RUNS} runs of each step, in one process and one thread (`python -m bench.request_path`).",
        "",
        "| step | ms |",
        "|---|---|",
        *(f"| {name} | {ms:.3f} |" for name, ms in costs.items()),
    ]
    served = sum(ms for name, ms in costs.items() if "OFF" not in name)
    cpu = served - costs["insert, synchronous=FULL (as served)"] + costs["insert, synchronous=OFF (its CPU)"]
    lines += [
        f"| **this service's own steps, as served** | **{served:.3f}** |",
        f"| of which CPU (the insert without its fsync) | {cpu:.3f} |",
        "",
    ]
    if full_run is not None:
        ceiling = full_run.ceiling_cpu_ms
        budget = ceiling * (1 / 0.6 - 1)
        insert = costs["insert, synchronous=FULL (as served)"]
        fits = "fits within" if cpu <= budget else "is over"
        lines += [
            f"The bare endpoint costs {ceiling:.2f} ms of server CPU per request under gunicorn "
            f"(bench/results/latest.md), so at 60 % of its rate the steps above may add {budget:.2f} ms. "
            f"Alone, their CPU {fits} that budget ({cpu:.2f} ms, {cpu / budget:.1f} ×). On top of it comes the "
            f"durable commit: {insert:.2f} ms of waiting for the disk, which SQLite's single writer "
            f"serializes, so one commit per delivery would allow at most {1000 / insert:,.0f} "
            f"acknowledgements/s on this disk against the {0.6 * full_run.ceiling_rate:,.0f}/s the target asks. "
            "The service therefore commits the deliveries that arrive together in one transaction "
            "(group_commit.py), which one thread cannot show.",
            "",
            "Under load the same work costs more than the sum of its steps. In the full run the server spent "
            f"{full_run.service_cpu_ms:.2f} ms of CPU per acknowledgement of this service and "
            f"{full_run.floor_cpu_ms:.2f} ms per acknowledgement of the floor (a verify and a group-committed "
            f"insert), against {ceiling:.2f} ms for the bare endpoint: {full_run.service_cpu_ms - ceiling:.2f} "
            f"and {full_run.floor_cpu_ms - ceiling:.2f} ms more, where this service's steps alone add {cpu:.2f} "
            "ms (the floor's fewer). The difference is in running them on many threads at once, which hand the "
            "GIL, the commit and the writers' turn to one another and are each woken by the kernel; "
            "bench/results/before-after.md (round 3) measures the kernel's share.",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    text = report(measure(), full_run_figures())
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
