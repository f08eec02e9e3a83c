"""Request path: what each of this service's steps of an acknowledgement costs on its own, as the
median of many runs in this process and one thread: the signature check, reading the payload, the
durable insert (and, with synchronous=OFF, its CPU alone) and the enqueue. The report sets them
against the server CPU per request the acknowledgement part measured in the same run.
"""

import statistics
import time
from collections.abc import Callable
from typing import Any

from bench.common import Bench
from bench.loadgen import delivery
from inbox import Inbox, NewDelivery
from intake import read_delivery
from signatures import SignatureVerifier
from work_queue import WorkQueue, close_huey, create_huey


def median_ms(step: Callable[[int], object], runs: int) -> float:
    times = []
    for i in range(runs):
        started = time.perf_counter()
        step(i)
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 3)


def run(bench: Bench) -> dict[str, Any]:
    runs = bench.sizes.path_runs
    data = bench.dir("request-path")
    body, headers = delivery(bench.secret, "msg_path_0", "67d3f1a95e593173d0a1b2c4")
    raw = body.encode()
    verifier = SignatureVerifier([bench.secret])
    durable = Inbox.open(f"sqlite:///{data / 'full.db'}")
    unsynced = Inbox.open(f"sqlite:///{data / 'off.db'}")
    with unsynced.engine.connect() as conn:  # the same insert without waiting for the disk: its CPU
        conn.exec_driver_sql("PRAGMA synchronous=OFF")
    queue = WorkQueue(create_huey(f"sqlite:///{data / 'queue.db'}"))

    def read(i: int, prefix: str) -> NewDelivery:
        return read_delivery(f"msg_{prefix}_{i}", raw, headers, None, None)

    try:
        steps = {
            "verify": median_ms(lambda i: verifier.verify(raw, headers), runs),
            "read": median_ms(lambda i: read(i, "read"), runs),
            "insert_cpu": median_ms(lambda i: unsynced.add(read(i, "off")), runs),
            "insert": median_ms(lambda i: durable.add(read(i, "full")), runs),
            "enqueue": median_ms(queue.enqueue, runs),
        }
    finally:
        durable.close()
        unsynced.close()
        close_huey(queue.huey)
    served = steps["verify"] + steps["read"] + steps["insert"] + steps["enqueue"]
    return {
        "runs": runs,
        "steps_ms": steps,
        "own_steps_ms": round(served, 3),
        "own_steps_cpu_ms": round(served - steps["insert"] + steps["insert_cpu"], 3),
    }
