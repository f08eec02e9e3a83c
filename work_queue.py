"""The work queue: Huey, carrying inbox ids from the web process to the workers.

Huey deletes a task when a worker takes it, so a worker that dies loses its task; the inbox keeps
the truth and the reconciler (a periodic task here) enqueues again whatever is due. Tasks are
registered on a Huey instance built from QUEUE_URL at start-up, not at import time.
"""

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from huey import SqliteHuey, crontab
from huey.api import Huey
from huey.consumer import Consumer
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

QUEUE_NAME = "optipick-webhooks"


class Worker(Protocol):
    def process(self, event_id: int) -> object: ...
    def reconcile(self) -> int: ...


Pruner = Callable[[], int]


def create_huey(queue_url: str) -> Huey:
    """A Huey instance for QUEUE_URL. Only SQLite so far: sqlite:///path/to/queue.db."""
    url = make_url(queue_url)
    path = Path(url.database or "")
    path.parent.mkdir(parents=True, exist_ok=True)
    # No fsync and no result store: the inbox is the durable record, so a task lost with the last
    # unsynced page costs nothing but a reconciler pass, and the request path stays fast.
    return SqliteHuey(QUEUE_NAME, filename=str(path), results=False, fsync=False)


class WorkQueue:
    def __init__(self, huey: Huey) -> None:
        self.huey = huey
        self._worker: Worker | None = None
        self._pruner: Pruner | None = None
        self._process = huey.task(name="process_event")(self._run_process)
        # Every minute. It is idempotent, so a second consumer running it too does no harm.
        self._reconcile = huey.periodic_task(crontab(), name="reconcile")(self._run_reconcile)
        # Hourly, when PRUNE_AFTER_DAYS is set; also harmless to run twice.
        self._prune = huey.periodic_task(crontab(minute="17"), name="prune")(self._run_prune)

    def __repr__(self) -> str:
        return f"WorkQueue({type(self.huey).__name__})"

    def attach(self, worker: Worker, pruner: Pruner | None = None) -> None:
        """Set what runs the tasks (the Processor, and the pruning when it is on)."""
        self._worker = worker
        self._pruner = pruner

    def enqueue(self, event_id: int, delay: float = 0) -> None:
        if delay > 0:
            self._process.schedule(args=(event_id,), delay=delay)
        else:
            self._process(event_id)

    def pending(self) -> int:
        return self.huey.pending_count()

    def consumer(self, workers: int, shutdown_timeout: float | None = None) -> Consumer:
        # An idle worker polls at most once a second (Huey's default backs off to 10 s), so the
        # first delivery after a quiet spell is not left waiting.
        return self.huey.create_consumer(
            workers=workers, worker_type="thread", max_delay=1.0, shutdown_timeout=shutdown_timeout
        )

    def _run_process(self, event_id: int) -> None:
        assert self._worker is not None, "WorkQueue.attach() was not called in this process"
        self._worker.process(event_id)

    def _run_reconcile(self) -> None:
        assert self._worker is not None, "WorkQueue.attach() was not called in this process"
        self._worker.reconcile()

    def _run_prune(self) -> None:
        if self._pruner is not None:
            self._pruner()
