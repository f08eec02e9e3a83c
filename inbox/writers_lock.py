"""Writers take turns on a SQLite inbox, across threads and processes, without sleeping while it is free.

SQLite admits one writer at a time. A connection that finds the database locked sleeps and tries
again (1, 2, 5, 10, 15, 20, 25 … ms, up to the busy timeout), so under load its writers spend most of
their time asleep while the lock is free: the web side's request threads and gunicorn's workers, and
the sixteen threads of a busy worker, all contending for the same file. Here a writer first takes a
lock of its process (threads queue on it) and then an exclusive `flock` of a file beside the database
(processes queue in the kernel), and the next in line gets each the moment it is released.

The lock file (`inbox.db-writers.lock`) holds no data; it must stay while the service runs.
Only the service's hot writes take turns (adding deliveries, the workers' bookkeeping). A write that
does not (a command such as `replay` or `prune`) still waits in SQLite's busy handler, as before.
"""

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class WritersLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._reset()

    def _reset(self) -> None:
        """State of this process's own: a forked child (a gunicorn worker) must open the file again, or it
        would share its parent's lock instead of waiting for it."""
        self._pid = os.getpid()
        self._threads = threading.Lock()
        self._fd: int | None = None

    @contextmanager
    def turn(self) -> Iterator[None]:
        """Hold the database for writing, against every other thread and process that takes turns.

        Not reentrant: a thread that holds a turn must not ask for another.
        """
        if self._pid != os.getpid():
            self._reset()
        with self._threads:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        with self._threads:
            if self._fd is not None and self._pid == os.getpid():
                os.close(self._fd)
            self._fd = None

    def __repr__(self) -> str:
        return f"WritersLock({str(self.path)!r})"
