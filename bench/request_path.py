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


def ceiling_figures() -> tuple[float, float] | None:
    """The bare endpoint's server CPU ms per request and requests/s, from the last full run."""
    try:
        ceiling = json.loads(LATEST.read_text())["results"]["acknowledgement"]["ceiling"]
        return ceiling["server_cpu_ms_per_request"], ceiling["requests_per_s"]
    except (OSError, KeyError, TypeError, ValueError):
        return None


def report(costs: dict[str, float], ceiling_run: tuple[float, float] | None) -> str:
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
    if ceiling_run is not None:
        ceiling, ceiling_rate = ceiling_run
        budget = ceiling * (1 / 0.6 - 1)
        insert = costs["insert, synchronous=FULL (as served)"]
        fits = "fits within" if cpu <= budget else "is over"
        lines += [
            f"The bare endpoint costs {ceiling:.2f} ms of server CPU per request under gunicorn "
            f"(bench/results/latest.md), so at 60 % of its rate the steps above may add {budget:.2f} ms. "
            f"Their CPU {fits} that budget ({cpu:.2f} ms, {cpu / budget:.1f} ×). On top of it comes the "
            f"durable commit: {insert:.2f} ms of waiting for the disk, which SQLite's single writer "
            f"serializes, so one commit per delivery would allow at most {1000 / insert:,.0f} "
            f"acknowledgements/s on this disk against the {0.6 * ceiling_rate:,.0f}/s the target asks. The "
            "service therefore commits the deliveries that arrive together in one transaction (group_commit.py), "
            "which one thread cannot show; the full run's figures, and its floor mode, show what that leaves.",
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    text = report(measure(), ceiling_figures())
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
