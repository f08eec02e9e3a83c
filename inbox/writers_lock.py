"""Writers take turns on a SQLite inbox, across threads and processes, without sleeping while it is free.

SQLite admits one writer at a time. A connection that finds the database locked sleeps and tries
again (1, 2, 5, 10, 15, 20, 25 … ms, up to the busy timeout), so under load its writers spend most of
their time asleep while the lock is free: the web side's request threads and gunicorn's workers, and
the sixteen threads of a busy worker, all contending for the same file. Here a writer first takes a
lock of its process (threads queue on it) and then an exclusive `flock` of a file beside the database
(processes queue in the kernel), and the next in line gets each the moment it is released.

A turn with a deadline (a delivery's, which must be answered in time) stops waiting at it. A `flock`
cannot be given a timeout, so when the file is held by another process such a turn has a helper
thread wait in `flock` for it, and waits for the helper only until its deadline; a `flock` the helper
gets after that goes to the next turn, or is let go at once. The kernel still hands the file over the
moment it is free.

The lock file (`inbox.db-writers.lock`) holds no data; it must stay while the service runs.
Only the service's hot writes take turns (adding deliveries, the workers' bookkeeping). A write that
does not (a command such as `replay` or `prune`) still waits in SQLite's busy handler, as before.
The lock only saves time: SQLite's own locking keeps the data safe whatever happens to it.
"""

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from errors import InboxUnavailable


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
        # The helper's side, under `_handoff`: it waits in flock (`_pending`), or holds the file for the
        # turn that asked (`_taken`), while `_wanted` says whether a turn still waits for it.
        self._handoff = threading.Condition()
        self._pending = False
        self._taken = False
        self._wanted = False
        self._helper: threading.Thread | None = None
        self._helper_fd = -1

    @contextmanager
    def turn(self, deadline: float | None = None) -> Iterator[None]:
        """Hold the database for writing, against every other thread and process that takes turns.

        `deadline` (a time.monotonic() value): raise InboxUnavailable instead of waiting past it.
        Not reentrant: a thread that holds a turn must not ask for another.
        """
        if self._pid != os.getpid():
            self._reset()
        if not self._threads.acquire(timeout=-1 if deadline is None else max(0.0, deadline - time.monotonic())):
            raise InboxUnavailable("the inbox was busy with this process's other writers past the deadline")
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            self._lock_file(self._fd, deadline)
            try:
                yield
            finally:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def _lock_file(self, fd: int, deadline: float | None) -> None:
        """Take the flock, directly or from the helper; only the holder of `_threads` calls this."""
        while True:
            with self._handoff:
                if self._adopt():  # the helper got it for a turn that stopped waiting: this turn's now
                    return
                pending = self._pending
            if not pending:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return
                except BlockingIOError:  # another process holds it
                    if deadline is None:
                        fcntl.flock(fd, fcntl.LOCK_EX)
                        return
                self._ask_helper(fd)
            with self._handoff:
                self._wanted = True
                try:
                    timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                    self._handoff.wait_for(lambda: self._taken or not self._pending, timeout)
                    if self._adopt():
                        return
                    if self._pending:
                        raise InboxUnavailable("another process held the inbox's writers' lock past the deadline")
                finally:
                    self._wanted = False
            # The helper let go of a flock nobody was waiting for: ask again.

    def _adopt(self) -> bool:
        """Under `_handoff`: take over the flock the helper holds for this process's next turn, if it does."""
        if not self._taken:
            return False
        self._taken = False
        return True

    def _ask_helper(self, fd: int) -> None:
        with self._handoff:
            self._pending = True
            self._helper_fd = fd
            if self._helper is None:
                self._helper = threading.Thread(target=self._help, name="writers-lock", daemon=True)
                self._helper.start()
            self._handoff.notify_all()

    def _help(self) -> None:
        """The helper thread: wait in flock whenever a turn asks, and hand the file over or let it go."""
        while True:
            with self._handoff:
                self._handoff.wait_for(lambda: self._pending)
                fd = self._helper_fd
            fcntl.flock(fd, fcntl.LOCK_EX)
            with self._handoff:
                self._pending = False
                if self._wanted:
                    self._taken = True
                else:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                self._handoff.notify_all()

    def close(self) -> None:
        with self._threads:
            with self._handoff:
                helping = self._pending or self._taken
            # A helper still waiting in flock keeps the descriptor: it goes with the process.
            if self._fd is not None and self._pid == os.getpid() and not helping:
                os.close(self._fd)
            self._fd = None

    def __repr__(self) -> str:
        return f"WritersLock({str(self.path)!r})"
