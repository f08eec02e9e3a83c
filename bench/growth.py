"""Growth: what one acknowledgement and the dead-letter listing cost with a small and a large inbox.

The inbox keeps every delivery (nothing is ever deleted by a failure), so it only grows; the request
path and `python main.py events --status dead` must not slow down with it. Each inbox is seeded
directly, in one transaction with sqlite3's executemany (the report's "seeded in" says how long it
took), mostly `done` with a hundred `dead` rows spread through it. Then, in this process, against
the real app and inbox: acknowledgements through the Flask test client (verify, durable insert,
enqueue; no HTTP server, whose cost does not depend on the table) and `Inbox.latest(Status.DEAD,
50)`, alternating between the two sizes so the machine's drift hits both alike; and the CLI once
per size, as a person would run it.
"""

import logging
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient
from sqlalchemy import create_engine

import inbox
from bench.common import Bench, request_ids
from bench.loadgen import delivery, delivery_body, percentile
from bench.procs import PROJECT_DIR, process_env
from config import load_settings
from services import Services
from webapp import create_app

log = logging.getLogger("bench")

DEAD_ROWS = 100
CHUNKS = 5  # the timed work of each size is split in this many parts, alternating between sizes
COLUMNS = (
    "msg_id",
    "status",
    "event_type",
    "path_type",
    "kind",
    "request_id",
    "optimization_key",
    "attempts",
    "last_error",
    "body",
    "headers",
    "received_at",
    "updated_at",
)


def _columns() -> tuple[str, ...]:
    """The seeded columns: COLUMNS, plus the console summary where this version of the table has one."""
    return COLUMNS + (("result_summary",) if "result_summary" in inbox.events.c else ())


def seed(path: Path, rows: int) -> float:
    """Create the inbox table at `path` and fill it with `rows` rows in one transaction; return the seconds."""
    started = time.perf_counter()
    engine = create_engine(f"sqlite:///{path}")  # the service's own schema, indexes included
    inbox.metadata.create_all(engine)
    engine.dispose()
    with closing(sqlite3.connect(path)) as conn:
        # A bench file, written once: no journal and no fsync while seeding. The service switches
        # it to WAL with synchronous=FULL when it opens it.
        conn.execute("PRAGMA journal_mode=OFF")
        conn.execute("PRAGMA synchronous=OFF")
        columns = _columns()
        statement = f"INSERT INTO inbox_events ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"  # noqa: S608 -- fixed column names
        conn.executemany(statement, _rows(rows, with_summary=len(columns) > len(COLUMNS)))
        conn.commit()
    return time.perf_counter() - started


def _rows(n: int, with_summary: bool) -> Iterator[tuple[Any, ...]]:
    dead_every = max(1, n // DEAD_ROWS)
    start = datetime(2026, 1, 1)
    for i in range(n):
        request_id = f"{i:024x}"
        msg_id = f"msg_seed{i:012d}"
        dead = i % dead_every == 0
        when = (start + timedelta(seconds=i)).isoformat(sep=" ", timespec="microseconds")
        headers = (
            f'{{"content-type": "application/json", "svix-id": "{msg_id}", "svix-signature": '
            f'"v1,{"A" * 43}=", "svix-timestamp": "{1767225600 + i}", "user-agent": "Svix-Webhooks/1.0"}}'
        )
        row = (
            msg_id,
            "dead" if dead else "done",
            "route.optimized",
            "route.optimized",
            "route",
            request_id,
            f"route:{request_id}",
            1 if not dead else 4,
            "no result for this request id (yet); gave up after 4 attempts" if dead else None,
            delivery_body(request_id).encode(),
            headers,
            when,
            when,
        )
        if with_summary:
            summary = None if dead else f"route {request_id} (Example, wave WAVE-1): 6 picks; 1 invalid pick left out"
            row = (*row, summary)
        yield row


class Subject:
    """One seeded inbox, opened by the real services, and what was measured on it."""

    def __init__(self, bench: Bench, rows: int) -> None:
        self.rows = rows
        self.data = bench.dir(f"growth-{rows}")
        self.seed_seconds = seed(self.data / "inbox.db", rows)
        self.settings = bench.receiver_settings(self.data, "http://127.0.0.1:9")  # the API is never called
        self.services = Services.build(load_settings(self.settings, env_file=None))
        self.client: FlaskClient = create_app(services=self.services).test_client()
        self.secret = bench.secret
        self.acks: list[float] = []
        self.listings: list[float] = []
        self.sent = 0

    def acknowledge(self, n: int) -> None:
        ids = request_ids(0xFFFFF0, self.sent + n)[self.sent :]
        prepared = [delivery(self.secret, f"msg_growth_{request_id}", request_id) for request_id in ids]
        self.sent += n
        for body, headers in prepared:
            started = time.perf_counter()
            response = self.client.post("/webhook/route", data=body, headers=headers)
            self.acks.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise RuntimeError(f"acknowledgement answered {response.status_code}: {response.get_data()!r}")

    def list_dead(self, n: int) -> None:
        for _ in range(n):
            started = time.perf_counter()
            listed = self.services.inbox.latest(inbox.Status.DEAD, 50)
            self.listings.append(time.perf_counter() - started)
            if len(listed) != 50:
                raise RuntimeError(f"the dead listing returned {len(listed)} rows, not 50")

    def reconcile_pass(self) -> float:
        started = time.perf_counter()
        self.services.inbox.due()
        return time.perf_counter() - started

    def cli(self) -> dict[str, Any]:
        """`python main.py events --status dead`, once, as a person runs it (interpreter start-up included)."""
        started = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "main.py", "events", "--status", "dead"],
            cwd=PROJECT_DIR,
            env=process_env(self.settings),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        seconds = time.perf_counter() - started
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or len(lines) != 51:
            raise RuntimeError(f"the events command failed ({done.returncode}): {done.stderr[-500:]}")
        return {"seconds": round(seconds, 3), "lines": len(lines)}

    def close(self) -> None:
        self.services.close()


def run(bench: Bench) -> dict[str, Any]:
    subjects = []
    try:
        for rows in bench.sizes.growth_rows:
            log.info("growth: seeding %d rows", rows)
            subjects.append(Subject(bench, rows))
        for subject in subjects:  # warm-up: first connections, statement caches, the pages' first read
            subject.acknowledge(10)
            subject.list_dead(2)
            subject.acks.clear()
            subject.listings.clear()
        log.info("growth: timing acknowledgements and dead listings")
        for _ in range(CHUNKS):
            for subject in subjects:
                subject.acknowledge(bench.sizes.growth_acks // CHUNKS)
                subject.list_dead(max(1, bench.sizes.growth_listings // CHUNKS))
        return {str(subject.rows): figures(subject) for subject in subjects}
    finally:
        for subject in subjects:
            subject.close()


def figures(subject: Subject) -> dict[str, Any]:
    def p90_ms(values: list[float]) -> float:
        return round(percentile(sorted(values), 90) * 1000, 3)

    return {
        "rows": subject.rows,
        "seed_seconds": round(subject.seed_seconds, 2),
        "db_megabytes": round((subject.data / "inbox.db").stat().st_size / 1e6, 1),
        "ack_median_ms": round(statistics.median(subject.acks) * 1000, 3),
        "ack_p90_ms": p90_ms(subject.acks),
        "acks_timed": len(subject.acks),
        "dead_listing_median_ms": round(statistics.median(subject.listings) * 1000, 3),
        "dead_listing_p90_ms": p90_ms(subject.listings),
        "listings_timed": len(subject.listings),
        "reconcile_pass_ms": round(subject.reconcile_pass() * 1000, 3),
        "cli_events_dead": subject.cli(),
    }
