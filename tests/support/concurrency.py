"""Threads and processes racing, in the order a test sets by events, never by sleeps."""

import fcntl
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from inbox.writers_lock import WritersLock


def in_parallel(count: int, action: Callable[[], Any]) -> list[Any]:
    """Run `action()` in `count` threads released at the same moment; return their results in order."""
    barrier = threading.Barrier(count)

    def run(_: int) -> Any:
        barrier.wait(timeout=10)
        return action()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(run, range(count)))


def run_together(count: int, work: Callable[[int], object]) -> list[object]:
    """Run work(0) … work(count-1) on `count` threads released at once; their results or exceptions, in order."""
    outcomes: list[object] = [None] * count
    start = threading.Barrier(count)

    def one(i: int) -> None:
        start.wait()
        try:
            outcomes[i] = work(i)
        except Exception as exc:  # the test looks at what each thread got
            outcomes[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return outcomes


class ToldTurns:
    """A writers' lock (writers_lock.py) that tells the test when a writer has asked for its turn."""

    def __init__(self, lock: WritersLock) -> None:
        self.lock = lock
        self.asked = threading.Event()

    @contextmanager
    def turn(self, deadline: float | None = None) -> Iterator[None]:
        self.asked.set()
        with self.lock.turn(deadline):
            yield

    def close(self) -> None:
        self.lock.close()


@contextmanager
def held_by_another_process(lock_file: Path) -> Iterator[Callable[[], None]]:
    """Another process takes the writers' lock `lock_file` and holds it until the body calls the function
    it is given (or ends); the body runs once that process has the lock."""
    taken_read, taken_write = os.pipe()
    go_read, go_write = os.pipe()
    holder = os.fork()
    if holder == 0:  # the other process: only system calls between fork and _exit
        try:
            os.close(taken_read)
            os.close(go_write)
            descriptor = os.open(lock_file, os.O_RDWR | os.O_CREAT)
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            os.write(taken_write, b"x")
            os.read(go_read, 1)  # until told to let go, or until the test process is gone
        finally:
            os._exit(0)
    os.close(taken_write)
    os.close(go_read)
    released = threading.Event()

    def let_go() -> None:
        if not released.is_set():
            released.set()
            os.write(go_write, b"x")

    try:
        assert os.read(taken_read, 1) == b"x", "the other process could not take the lock"
        yield let_go
    finally:
        let_go()
        os.waitpid(holder, 0)
        os.close(taken_read)
        os.close(go_write)
