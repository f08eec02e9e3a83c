"""What every part of the bench shares: the run's sizes, the WSGI server's settings, the secret, the
stand-in OptiPick API, and the settings a receiver process is started with."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.procs import Processes
from optipick_standin import StandInApi

API_KEY = "bench-api-key-" + "k" * 20  # the stand-in's key; not a secret of anyone's


@dataclass(frozen=True)
class Sizes:
    """How much each part does. Full: figures worth reading; smoke: tiny, it proves the bench works."""

    phase_seconds: float  # measured part of each acknowledgement phase
    phase_count: int  # deliveries at most in one phase (the count bound)
    warmup: int  # unmeasured deliveries per connection before each phase
    rounds: int  # each mode runs this many times, interleaved, so drift hits every mode alike
    api_ids: int  # distinct request ids the stand-in serves in a phase (cycled through)
    e2e_rounds: int  # end-to-end: deliveries per worker thread (each takes one API delay)
    path_runs: int  # request path: runs of each step
    growth_rows: tuple[int, int]  # inbox sizes compared
    growth_acks: int  # timed acknowledgements per size
    growth_listings: int  # timed dead listings per size
    memory_deliveries: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


FULL = Sizes(
    phase_seconds=12.0,
    phase_count=60_000,
    warmup=25,
    rounds=2,
    api_ids=4000,
    e2e_rounds=60,
    path_runs=2000,
    growth_rows=(1_000, 1_000_000),
    growth_acks=300,
    growth_listings=30,
    memory_deliveries=10_000,
)
SMOKE = Sizes(
    phase_seconds=0.5,
    phase_count=2_000,
    warmup=2,
    rounds=1,
    api_ids=300,
    e2e_rounds=4,
    path_runs=100,
    growth_rows=(1_000, 20_000),
    growth_acks=20,
    growth_listings=5,
    memory_deliveries=200,
)


@dataclass(frozen=True)
class Server:
    """The WSGI server every HTTP mode runs under, with the same settings for all."""

    workers: int = 2
    threads: int = 4
    worker_class: str = "gthread"

    def args(self, port: int, app: str) -> list[str]:
        return [
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(self.workers),
            "--threads",
            str(self.threads),
            "--worker-class",
            self.worker_class,
            "--keep-alive",
            "30",  # the generator's connections stay open for the whole phase
            "--no-control-socket",  # no shared socket under ~/.gunicorn: several servers may run at once
            app,
        ]

    def as_dict(self) -> dict[str, Any]:
        return {"server": "gunicorn", **asdict(self)}


@dataclass
class Bench:
    """One run: where its files go, what it started, and the secret its deliveries are signed with."""

    tmp: Path
    processes: Processes
    sizes: Sizes
    server: Server
    secret: str
    connections: int = 8  # per generator process
    generator_processes: int = 2

    def dir(self, name: str) -> Path:
        path = self.tmp / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def receiver_settings(self, data_dir: Path, api_url: str, **extra: str) -> dict[str, str]:
        """The service's settings: temporary SQLite files, the stand-in API, everything else default."""
        return {
            "WEBHOOK_SECRET": self.secret,
            "OPTIPICK_API_KEY": API_KEY,
            "OPTIPICK_API_URL": api_url,
            "DATABASE_URL": f"sqlite:///{data_dir / 'inbox.db'}",
            "QUEUE_URL": f"sqlite:///{data_dir / 'queue.db'}",
            **extra,
        }


def request_ids(tag: int, n: int) -> tuple[str, ...]:
    """`n` distinct 24-hex-digit request ids (the shape of OptiPick's), distinct per `tag` too."""
    return tuple(f"{tag:06x}{i:018x}" for i in range(n))


_tags = iter(range(1, 1 << 24))
_tags_lock = threading.Lock()


def next_tag() -> int:
    with _tags_lock:
        return next(_tags)


@contextmanager
def stand_in(delay: float, ids: tuple[str, ...]) -> Iterator[StandInApi]:
    """The stand-in OptiPick API on a free loopback port, serving the example route result as each of `ids`."""
    api = StandInApi(API_KEY, delay=delay)
    for request_id in ids:
        api.add_result("route", request_id)
    with api.serve():
        yield api
