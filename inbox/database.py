"""The inbox's database: its engines, and what differs between SQLite and PostgreSQL, declared once.

`open_database(url)` picks the backend from the URL. The store (store.py) asks its Database for the
engines, the insert-or-ignore statement, a writer's turn, how to keep a transaction from waiting on
locks past a deadline, and whether the database is still the one it opened; it never asks which
dialect it runs on, the way Huey keeps each backend's differences in a small storage subclass.
"""

import logging
import os
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, MetaData, Table, create_engine, event, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

import defaults
from config import ensure_parent_folder
from errors import InboxUnavailable, InboxVanished
from inbox.group_commit import no_turn
from inbox.writers_lock import WritersLock

log = logging.getLogger("inbox")

# Looks at the tables before creating them is given up (see Database.create_tables).
SCHEMA_CREATE_LOOKS = 5


class Database:
    """One inbox database: `engine` stores deliveries and serves the commands; `bookkeeping` records
    the workers' progress (claims, leases, outcomes, history)."""

    def __init__(self, engine: Engine, bookkeeping: Engine | None = None) -> None:
        self.engine = engine
        self.bookkeeping = bookkeeping or engine

    def insert(self, table: Table) -> Any:
        """An INSERT that can be told `on_conflict_do_nothing` (each dialect has its own)."""
        raise NotImplementedError

    def turn(self, deadline: float | None = None) -> AbstractContextManager[None]:
        """What a write holds while it writes, among the service's other writers: nothing by default.
        With a `deadline` (time.monotonic()), waiting for it past then raises InboxUnavailable."""
        return no_turn(deadline)

    def bound(self, connection: Connection, seconds: float) -> None:
        """Keep the transaction open on `connection` from waiting on a lock for more than `seconds`."""
        raise NotImplementedError

    def verify(self) -> None:
        """Raise InboxVanished when the database is no longer the one opened; by default it always is."""

    def create_tables(self, metadata: MetaData) -> None:
        """Create whatever tables are missing, even with other processes doing the same at this moment.

        Several processes starting at once (gunicorn's workers) race between "is the table there?"
        and "create it" for each table; a loser finds more tables there at every look, so a few
        looks settle it. (PostgreSQL reports the race as a unique violation on its catalog, or as
        DuplicateTable: a ProgrammingError.)
        """
        for look in range(1, SCHEMA_CREATE_LOOKS + 1):
            try:
                metadata.create_all(self.engine)
                return
            except (OperationalError, IntegrityError, ProgrammingError):
                if look == SCHEMA_CREATE_LOOKS:
                    raise
                time.sleep(0.05 * look)

    def close(self) -> None:
        self.engine.dispose()
        self.bookkeeping.dispose()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.engine.url.render_as_string(hide_password=True)!r})"


class SqliteDatabase(Database):
    """A local file in WAL mode. An acknowledged delivery is committed with synchronous=FULL, so it
    survives a power cut (WAL with NORMAL can lose the last commits). The workers' bookkeeping uses
    NORMAL: a power cut can at worst undo the last few claims or outcomes, which makes those events run
    again, as a crash would, and saves an fsync on each of the writes that process an event. Writers
    take turns on a lock file beside the database (writers_lock.py).

    The file is known by its device and inode from the moment its tables are there. A connection keeps
    the file it opened, so one deleted or replaced under the service would take what is stored next
    with it; `verify` compares the file at the path with the one opened, and once they differ the
    inbox refuses every write until a restart, saying so once, loudly.
    """

    def __init__(self, url: str) -> None:
        super().__init__(sqlite_engine(url, "FULL"), sqlite_engine(url, "NORMAL"))
        database = self.engine.url.database
        # No file, nothing to lock or to watch: an in-memory database lives in one process.
        on_disk = bool(database) and database != ":memory:"
        self.path = Path(os.path.abspath(database)) if on_disk and database else None
        self.writers = WritersLock(Path(f"{database}-writers.lock")) if on_disk else None
        self._identity: tuple[int, int] | None = None
        self._vanished = False  # once true, for good: only a restart opens the file at the path
        self._vanishing = threading.Lock()

    def insert(self, table: Table) -> Any:
        return sqlite.insert(table)

    def turn(self, deadline: float | None = None) -> AbstractContextManager[None]:
        return no_turn(deadline) if self.writers is None else self.writers.turn(deadline)

    def bound(self, connection: Connection, seconds: float) -> None:
        """The busy timeout of the connection, in whole tenths of a second below `seconds`: a request
        path's batches then ask for the same value again and again, and the PRAGMA is run only when it
        changes (SQLite keeps it per connection, as `connection.info` remembers)."""
        ms = int(seconds * 1000)
        wanted = ms // 100 * 100 if ms >= 100 else max(1, ms)
        if connection.info.get("busy_timeout_ms", defaults.SQLITE_BUSY_TIMEOUT_MS) != wanted:
            connection.exec_driver_sql(f"PRAGMA busy_timeout={wanted}")
            connection.info["busy_timeout_ms"] = wanted

    def create_tables(self, metadata: MetaData) -> None:
        super().create_tables(metadata)
        if self.path is not None:
            self._identity = self._identity_on_disk()

    def verify(self) -> None:
        """One stat of the path: is the file there still the one this process opened?"""
        if not self._vanished:
            if self._identity is None or self._identity_on_disk() == self._identity:
                return
            with self._vanishing:
                if not self._vanished:
                    log.error(
                        "the inbox file %s was deleted or replaced while the service ran: restart it so it opens "
                        "the file at DATABASE_URL (until then deliveries are answered 503 and no event is claimed)",
                        self.path,
                    )
                    self._vanished = True
        raise InboxVanished(f"the inbox file {self.path} is not the one this process opened: restart the service")

    def _identity_on_disk(self) -> tuple[int, int] | None:
        assert self.path is not None
        try:
            found = os.stat(self.path)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise InboxUnavailable(f"the inbox file {self.path} cannot be looked at: {exc.strerror}") from None
        return found.st_dev, found.st_ino

    def close(self) -> None:
        if self.writers is not None:
            self.writers.close()
        super().close()


class PostgresDatabase(Database):
    """A server whose writers do not exclude each other, so they take no turns; its pooled connections
    are pinged before use, since a server can drop them."""

    def __init__(self, url: str) -> None:
        super().__init__(create_engine(url, pool_pre_ping=True))

    def insert(self, table: Table) -> Any:
        return postgresql.insert(table)

    def bound(self, connection: Connection, seconds: float) -> None:
        """SET LOCAL lock_timeout and statement_timeout (set_config(…, true) is SET LOCAL, and takes
        both in one round trip): a lock held elsewhere fails the transaction instead of stalling it."""
        connection.execute(_BOUND, {"ms": f"{max(1, int(seconds * 1000))}ms"})


_BOUND = text("select set_config('lock_timeout', :ms, true), set_config('statement_timeout', :ms, true)")


BACKENDS: dict[str, Callable[[str], Database]] = {"sqlite": SqliteDatabase, "postgresql": PostgresDatabase}


def open_database(url: str) -> Database:
    """The Database for DATABASE_URL (config.parse_database_url has checked its backend)."""
    return BACKENDS[make_url(url).get_backend_name()](url)


def describe_error(exc: BaseException) -> str:
    """A storage error in one line for a log: the class and the driver's first line, never the SQL or
    its parameters (which hold deliveries); the service's own errors (InboxUnavailable) by their message."""
    if isinstance(exc, InboxUnavailable):
        return str(exc)
    detail = getattr(exc, "orig", None) or exc
    first = (str(detail).strip().splitlines() or [""])[0][:200]
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def sqlite_engine(url: str, synchronous: str) -> Engine:
    """An engine on a SQLite file in WAL mode with the given `synchronous` level. A local file has no
    connection to go stale, so no ping per checkout."""
    engine = create_engine(url)
    if engine.url.database and engine.url.database != ":memory:":
        ensure_parent_folder("DATABASE_URL", Path(engine.url.database))

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute(f"PRAGMA busy_timeout={defaults.SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    return engine
