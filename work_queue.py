"""The work queue: Huey, carrying inbox ids from the web process to the workers.

Huey deletes a task when a worker takes it, so a worker that dies loses its task; the inbox keeps
the truth and the reconciler (a periodic task here) enqueues again whatever is due. Tasks are
registered on a Huey instance built from QUEUE_URL at start-up, not at import time.

So the queue is disposable. The request path enqueues through a connection of its own that waits for
the queue only briefly (`WorkQueue.offer`), since a task it cannot enqueue is the reconciler's
anyway; and a SQLite queue file that cannot be opened or is corrupt is moved aside when the service
starts (`create_huey(…, repair=True)`), and a new one made.
"""

import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import psycopg
import redis
from huey import PostgresHuey, RedisHuey, SqliteHuey, crontab
from huey.api import Huey
from huey.consumer import Consumer
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from sqlalchemy.engine import URL, make_url

import defaults
from config import ensure_parent_folder
from errors import ConfigError

log = logging.getLogger(__name__)

QUEUE_NAME = "optipick-webhooks"
REDIS_SCHEMES = ("redis", "rediss")


class Worker(Protocol):
    def process(self, event_id: int) -> object: ...
    def reconcile(self) -> int: ...


Pruner = Callable[[], int]
# What the processor and the operations commands enqueue with: (inbox id, delay in seconds).
Enqueue = Callable[[int, float], None]


def create_huey(queue_url: str, repair: bool = False) -> Huey:
    """A Huey instance for QUEUE_URL (config.parse_queue_url has checked it):

    - sqlite:///path/to/queue.db: one host only (the default);
    - redis://[:password@]host:6379/0 (rediss:// for TLS): RedisHuey;
    - postgresql://… or postgresql+psycopg://…: PostgresHuey, its tables (huey_task, huey_schedule, …)
      in the database and search_path the URL names, which may be the inbox's own.

    No result store anywhere: the inbox is the durable record, and nothing reads a task's return value.
    With `repair` (the service starting), a SQLite queue file that cannot be opened or is corrupt is
    moved aside first (set_aside_if_unusable).
    """
    url = make_url(queue_url)
    backend = url.get_backend_name()
    if backend in REDIS_SCHEMES:
        return RedisHuey(QUEUE_NAME, url=queue_url, results=False)
    if backend == "postgresql":
        return _postgres_huey(url)
    path = Path(url.database or "")
    ensure_parent_folder("QUEUE_URL", path)
    if repair:
        set_aside_if_unusable(path)
    # No fsync: a task lost with the last unsynced page costs nothing but a reconciler pass, and the
    # request path stays fast.
    return SqliteHuey(QUEUE_NAME, filename=str(path), results=False, fsync=False)


# SQLite's primary result codes that say a file is not a usable database.
SQLITE_CORRUPT, SQLITE_CANTOPEN, SQLITE_NOTADB = 11, 14, 26


def unusable_reason(path: Path) -> str | None:
    """Why the SQLite queue file at `path` cannot be used (it cannot be opened, or is corrupt), or None.

    A locked file is usable (it only has to wait), and so is a missing one (it is created).
    """
    if not os.path.lexists(path):
        return None
    try:
        connection = sqlite3.connect(path, timeout=defaults.ENQUEUE_TIMEOUT_SECONDS)
        try:
            verdict = connection.execute("pragma quick_check").fetchone()
        finally:
            connection.close()
    except sqlite3.DatabaseError as exc:
        if exc.sqlite_errorcode & 0xFF not in (SQLITE_CORRUPT, SQLITE_CANTOPEN, SQLITE_NOTADB):
            return None
        return str(exc)
    if verdict is None or verdict[0] != "ok":
        return f"its integrity check says {verdict[0] if verdict else 'nothing'!r}"
    return None


def set_aside_if_unusable(path: Path, now: datetime | None = None) -> Path | None:
    """Move an unusable SQLite queue file to `<name>.corrupt-<UTC time>` (its -wal and -shm files beside
    it, named to match), so a new one is made; return where it went, or None when it was usable.

    The queue only carries inbox ids: what it held is due in the inbox, and the reconciler enqueues it
    again. Processes starting together (gunicorn's workers) may each find the file unusable: a file is
    moved only while the path still names the one found unusable, so a new one is left alone.
    """
    reason = unusable_reason(path)
    if reason is None:
        return None
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    try:
        found = os.lstat(path)
        # The journal files first: a new file beside an old -wal would take its frames as its own.
        for suffix in ("-wal", "-shm"):
            journal = path.with_name(path.name + suffix)
            if journal.exists():
                os.replace(journal, aside.with_name(aside.name + suffix))
        now_there = os.lstat(path)
        if (now_there.st_dev, now_there.st_ino) != (found.st_dev, found.st_ino):
            return None
        os.replace(path, aside)
    except FileNotFoundError:  # another process moved it first
        return None
    except OSError as exc:
        raise ConfigError(
            f"QUEUE_URL points at {path}, which cannot be used ({reason}) and cannot be moved aside "
            f"({exc.strerror}): move or delete it; the queue holds nothing the inbox does not"
        ) from None
    log.warning(
        "QUEUE_URL: the queue file %s cannot be used (%s); moved it to %s and started a new one: the inbox "
        "keeps every event, and the reconciler enqueues again what is due",
        path,
        reason,
        aside.name,
    )
    return aside


def _intake_storage(huey: Huey) -> Any:
    """A connection to the queue of the request path's own, that waits ENQUEUE_TIMEOUT_SECONDS at most
    for it (Huey's own storage is shared with the consumer and waits 5 s, or forever)."""
    timeout = defaults.ENQUEUE_TIMEOUT_SECONDS
    if isinstance(huey, SqliteHuey):
        return huey.get_storage(**{**huey.storage_kwargs, "timeout": timeout, "create_tables": False})
    if isinstance(huey, RedisHuey):
        url = huey.storage_kwargs["url"]
        pool = redis.ConnectionPool.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        return huey.get_storage(connection_pool=pool)
    dsn = huey.storage_kwargs["dsn"]
    ms = round(timeout * 1000)
    options = f"{conninfo_to_dict(dsn).get('options', '')} -c lock_timeout={ms} -c statement_timeout={ms}"
    # libpq waits for a connection in whole seconds, 2 at least.
    return huey.get_storage(dsn=make_conninfo(dsn, options=options.strip(), connect_timeout=2), create_tables=False)


def close_huey(huey: Huey) -> None:
    """Close the connections a Huey instance holds (PostgreSQL warns about unclosed ones)."""
    huey.storage.close()
    pool = getattr(huey.storage, "pool", None)  # Redis keeps a connection pool
    if pool is not None:
        pool.disconnect()


def _postgres_huey(url: URL) -> Huey:
    # The same URL as SQLAlchemy reads it, as libpq connection parameters (user, password, host, port,
    # dbname, and query parameters such as sslmode or options=-csearch_path=…).
    params = {
        "host": url.host,
        "port": url.port,
        "user": url.username,
        "password": url.password,
        "dbname": url.database,
        **{key: value if isinstance(value, str) else value[-1] for key, value in url.query.items()},
    }
    dsn = make_conninfo(**{key: str(value) for key, value in params.items() if value is not None})
    try:
        try:
            return PostgresHuey(QUEUE_NAME, dsn=dsn, results=False)
        except (psycopg.errors.UniqueViolation, psycopg.errors.DuplicateObject, psycopg.errors.DuplicateTable):
            # Processes starting together (gunicorn's workers, several consumers) race to create Huey's
            # tables; "create table if not exists" can still fail for the loser while the winner commits.
            # The winner has committed by now, so a second look finds the tables there.
            return PostgresHuey(QUEUE_NAME, dsn=dsn, results=False)
    except psycopg.OperationalError as exc:  # Huey connects at once, to create its tables
        reason = (str(exc).strip().splitlines() or [""])[0]  # libpq's messages never include the password
        raise ConfigError(f"QUEUE_URL: cannot connect to PostgreSQL ({reason})") from None


class WorkQueue:
    """Owns the Huey side: the tasks (process an event, reconcile, prune), enqueueing them, and the consumer."""

    def __init__(self, huey: Huey) -> None:
        self.huey = huey
        self._intake = _intake_storage(huey)
        self._intake_turn = threading.Lock()  # the request threads' turns on the intake connection
        self._worker: Worker | None = None
        self._pruner: Pruner | None = None
        self._process = huey.task(name="process_event")(self._run_process)
        # Every minute, on every consumer (python main.py, each python main.py worker, on every host).
        # Running it side by side is safe: on PostgreSQL, Inbox.due hands out rows with FOR UPDATE SKIP
        # LOCKED, so two reconcilers do not take the same rows in one pass; and an event enqueued twice
        # anyway is still run once, because a worker's claim is a compare-and-set only one can win.
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

    def offer(self, event_id: int) -> None:
        """Enqueue from the request path: wait for the queue ENQUEUE_TIMEOUT_SECONDS for a turn and as
        long again for the queue itself, then raise (TimeoutError, or the queue's own error) and leave
        the event to the reconciler."""
        if not self._intake_turn.acquire(timeout=defaults.ENQUEUE_TIMEOUT_SECONDS):
            raise TimeoutError("the request path's other enqueues held the queue")
        try:
            task = self._process.s(event_id)
            self._intake.enqueue(self.huey.serialize_task(task), task.priority)
        finally:
            self._intake_turn.release()

    def close(self) -> None:
        """Close the queue's connections, the request path's own with them."""
        close_huey(self.huey)
        self._intake.close()
        pool = getattr(self._intake, "pool", None)
        if pool is not None:
            pool.disconnect()

    def pending(self) -> int:
        return int(self.huey.pending_count())

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
