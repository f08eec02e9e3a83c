"""A deadline for the whole of an API call, however slowly its answer comes.

requests' timeouts bound each wait for the socket, not the call: an answer trickling one byte at a
time (in its headers, its body or its chunk framing) never trips them. Here one watchdog thread per
client cuts off every call still running at its deadline by shutting its socket down, which wakes a
read blocked on it at once, with TLS too. To know which socket is whose, requests' adapter is given
connections that join the call of the thread sending on them (through an HTTP proxy too; a SOCKS
proxy's connections are not watched).
"""

import contextlib
import socket
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.poolmanager import ProxyManager
from urllib3.response import HTTPResponse

running = threading.local()  # .call: the Call this thread is making, which its connection joins
_owners = threading.Lock()  # guards which call a connection belongs to, and cutting it


class Call:
    """One API call and its deadline (a time.monotonic() value): the connection it uses, and whether
    the deadline cut it off."""

    __slots__ = ("connection", "deadline", "expired", "finished")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.connection: _WatchedConnection | None = None
        self.expired = False
        self.finished = False


class Watchdog:
    """Cuts off the calls still running at their deadline, from one thread that sleeps until the next.

    Every call of a client gets the same budget, so calls come due in the order they start: a queue is
    the whole schedule. The thread starts with the first call and ends with close().
    """

    def __init__(self) -> None:
        self._wake = threading.Condition()
        self._due: deque[Call] = deque()
        self._thread: threading.Thread | None = None
        self._closed = False

    def watch(self, call: Call) -> None:
        with self._wake:
            self._due.append(call)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="optipick-api-deadlines", daemon=True)
                self._thread.start()
            elif len(self._due) == 1:  # it sleeps without a deadline to wait for
                self._wake.notify()

    def forget(self, call: Call) -> None:
        """The call is over: its connection is no longer its to cut. (It leaves the queue when due.)"""
        with _owners:
            call.finished = True
            call.connection = None

    def close(self) -> None:
        with self._wake:
            self._closed = True
            self._wake.notify()
            thread = self._thread
        if thread is not None:
            thread.join()

    def _run(self) -> None:
        with self._wake:
            while not self._closed:
                now = time.monotonic()
                while self._due and (self._due[0].finished or self._due[0].deadline <= now):
                    _expire(self._due.popleft())
                self._wake.wait(self._due[0].deadline - now if self._due else None)


def _expire(call: Call) -> None:
    with _owners:
        if call.finished:
            return
        call.expired = True
        connection = call.connection
        if connection is not None and connection.call is call:
            connection.cut()


class _WatchedConnection(HTTPConnection):
    """A connection the watchdog can cut: it belongs to the call of the thread sending on it."""

    call: Call | None = None
    was_cut = False

    def request(self, *args: Any, **kwargs: Any) -> None:
        call = getattr(running, "call", None)
        with _owners:
            if self.was_cut:  # an earlier call's deadline shut its socket: start afresh
                self.was_cut = False
                self.close()
            self.call = call
            if call is not None:
                call.connection = self
        super().request(*args, **kwargs)

    def getresponse(self) -> HTTPResponse:  # type: ignore[override]  # as urllib3 declares it
        with _owners:
            if self.call is not None and self.call.expired:  # the deadline passed while it connected
                self.cut()
        return super().getresponse()

    def cut(self) -> None:
        """Shut the socket down, so a read blocked on it returns at once. Called holding _owners."""
        self.was_cut = True
        if self.sock is not None:
            with contextlib.suppress(OSError):
                # The plain socket's shutdown, also under TLS: SSLSocket's own would drop its TLS state
                # while another thread is reading with it.
                socket.socket.shutdown(self.sock, socket.SHUT_RDWR)


class _WatchedTLSConnection(_WatchedConnection, HTTPSConnection):
    pass


class _WatchedPool(HTTPConnectionPool):
    ConnectionCls = _WatchedConnection


class _WatchedTLSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedTLSConnection


_WATCHED_POOLS: dict[str, type[HTTPConnectionPool]] = {"http": _WatchedPool, "https": _WatchedTLSPool}


class WatchedAdapter(HTTPAdapter):
    """requests' adapter, whose connections (through an HTTP proxy too) the watchdog can cut."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_WATCHED_POOLS)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if isinstance(manager, ProxyManager):
            manager.pool_classes_by_scheme = dict(_WATCHED_POOLS)
        return manager


@contextlib.contextmanager
def watched(watchdog: Watchdog, seconds: float) -> Iterator[Call]:
    """This thread's call, cut off `seconds` from now should it still be running."""
    call = Call(time.monotonic() + seconds)
    watchdog.watch(call)
    running.call = call
    try:
        yield call
    finally:
        running.call = None
        watchdog.forget(call)
