"""The HTTP server: waitress, set up here and nowhere else, for `python main.py` and `python main.py web`.

Why waitress (README, "Production", has the measurements): its one I/O thread reads every request
whole, headers and body, before a request thread sees it, so a client that sends slowly, or nothing
at all, costs a socket and a buffer, never a thread. The request threads (THREADS) only run the app,
and deliveries that arrive together share one durable commit among them (inbox/group_commit.py).

What this module adds to waitress, each in its own small class:

- a request with both Transfer-Encoding and Content-Length is refused with 400 (waitress would let
  Transfer-Encoding win); two different Content-Lengths are refused by waitress itself;
- the server's own error answers (400, 408, 413, 431, 500, 501) are short JSON like the service's,
  `{"error": "…"}`, instead of waitress's plain text;
- a request that is still not whole REQUEST_SECONDS after its first byte is answered 408 and its
  connection closed (waitress alone only closes connections that send nothing for channel_timeout);
- a graceful stop: no new connections, the requests already read are answered, then it returns.

Host and port come from the settings (HOST, PORT); everything else is a constant here.
"""

import json
import logging
import resource
import threading
import time
from typing import TYPE_CHECKING

from waitress.adjustments import Adjustments
from waitress.channel import ClientDisconnected, HTTPChannel
from waitress.parser import HTTPRequestParser, ParsingError
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask, ThreadedTaskDispatcher
from waitress.utilities import Error

from config import Settings

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

log = logging.getLogger(__name__)

THREADS = 8  # request threads: they only run the app, so a few carry a lot (and share commits)
CONNECTION_LIMIT = 2000  # open connections at most; past it, new ones wait in the listen backlog
REQUEST_SECONDS = 30  # a request still not whole this long after its first byte is answered 408
IDLE_SECONDS = 30  # a connection with no request in progress and nothing sent for this long is closed
MAX_HEADER_BYTES = 64 * 1024  # the request line and headers together (Svix sends well under 4 KiB)
DRAIN_SECONDS = 10  # at a stop, how long requests already received may take to be answered

# Our words for the statuses only the server answers (the app's own answers never come here).
MESSAGES = {
    400: "bad request",
    408: "request timeout",
    413: "payload too large",
    431: "request header fields too large",
    500: "internal error",
    501: "transfer-encoding not supported",
}


def json_error(status: int, reason: str) -> bytes:
    """A whole HTTP/1.1 answer with a JSON error body, closing the connection."""
    body = json.dumps({"error": MESSAGES.get(status, reason.lower())}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


class StrictParser(HTTPRequestParser):  # type: ignore[misc]  # waitress is untyped
    """waitress's parser, refusing a request that carries both Transfer-Encoding and Content-Length (a
    proxy in front that read it the other way would see a different request: request smuggling)."""

    def __init__(self, adj: Adjustments) -> None:
        super().__init__(adj)
        self.started = time.monotonic()  # its first byte's arrival

    def parse_header(self, header_plus: bytes) -> None:
        super().parse_header(header_plus)
        # waitress removes Transfer-Encoding from the headers of an HTTP/1.1 request once it has read it
        # (self.chunked says it was there); an HTTP/1.0 request keeps it.
        has_transfer_encoding = self.chunked or "TRANSFER_ENCODING" in self.headers
        if has_transfer_encoding and "CONTENT_LENGTH" in self.headers:
            raise ParsingError("both Transfer-Encoding and Content-Length")


class JsonErrorTask(ErrorTask):  # type: ignore[misc]  # waitress is untyped
    """The answer to a request waitress itself refused (400, 413, 431, 501, or 500 when the app failed
    outside Flask's own handlers), as JSON."""

    def execute(self) -> None:
        error: Error = self.request.error
        body = json.dumps({"error": MESSAGES.get(error.code, error.reason.lower())}).encode()
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)


class Channel(HTTPChannel):  # type: ignore[misc]  # waitress is untyped
    parser_class = StrictParser
    error_task_class = JsonErrorTask


class Server(TcpWSGIServer):  # type: ignore[misc]  # waitress is untyped
    channel_class = Channel

    def maintenance(self, now: float) -> None:
        """Every cleanup_interval, in the I/O thread: close idle connections (waitress's own), and answer
        408 to a request still not whole REQUEST_SECONDS after its first byte."""
        super().maintenance(now)
        cutoff = time.monotonic() - REQUEST_SECONDS
        for channel in list(self.active_channels.values()):
            request = channel.request
            if request is None or channel.requests or channel.will_close or channel.close_when_flushed:
                continue
            if request.started < cutoff:
                channel.request = None
                try:
                    channel.write_soon(json_error(408, "Request Timeout"))
                    channel.close_when_flushed = True
                except ClientDisconnected:  # gone meanwhile
                    channel.will_close = True


class WebServer:
    """The app under waitress on `host`:`port`: `serve_forever()` in a thread, `shutdown()` from another."""

    def __init__(self, app: "WSGIApplication", host: str, port: int, max_body_bytes: int) -> None:
        _allow_open_files(CONNECTION_LIMIT + 256)
        adjustments = Adjustments(
            host=host,
            port=port,
            threads=THREADS,
            connection_limit=CONNECTION_LIMIT,
            channel_timeout=IDLE_SECONDS,
            cleanup_interval=1,  # how often maintenance() runs, so a 408 comes within a second of its time
            max_request_header_size=MAX_HEADER_BYTES,
            # A Content-Length over the app's limit is refused (413) before the body is read; one byte
            # over it, so that a body of exactly MAX_BODY_BYTES reaches the app (waitress refuses >=).
            max_request_body_size=max_body_bytes + 1,
            asyncore_use_poll=True,  # select() fails past file descriptor 1024
            ident="optipick-webhooks",
        )
        dispatcher = ThreadedTaskDispatcher()
        dispatcher.set_thread_count(THREADS)
        self._server = Server(app, map={}, dispatcher=dispatcher, adj=adjustments, sockinfo=adjustments.listen[0])
        self.host: str = str(self._server.effective_host)
        self.port: int = int(self._server.effective_port)
        self._done = threading.Event()
        # waitress warns at every request that waits for a thread: under load that is every burst.
        logging.getLogger("waitress.queue").setLevel(logging.ERROR)

    def serve_forever(self) -> None:
        try:
            self._server.run()
        finally:
            self._done.set()

    def shutdown(self) -> None:
        """Stop gracefully: close the listening socket (new deliveries go to the next process), let the
        requests already received be answered, for DRAIN_SECONDS at most, then close every connection
        and return once serve_forever() has."""
        server = self._server
        server.trigger.pull_trigger(lambda: _stop_listening(server))
        deadline = time.monotonic() + DRAIN_SECONDS
        while _busy(server) and time.monotonic() < deadline:
            server.trigger.pull_trigger(lambda: _close_idle(server))
            time.sleep(0.05)
        if _busy(server):
            log.warning("stopping with requests still unanswered after %d s", DRAIN_SECONDS)
        server.trigger.pull_trigger(lambda: _close_all(server))
        self._done.wait(timeout=5)
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=5)


def create_server(app: "WSGIApplication", settings: Settings) -> WebServer:
    """The server for `app` on the settings' HOST and PORT, listening from now on."""
    return WebServer(app, settings.host, settings.port, settings.max_body_bytes)


def _stop_listening(server: Server) -> None:
    server.accepting = False
    server.del_channel()
    server.socket.close()


def _busy(server: Server) -> bool:
    """Whether a request has been received and not yet fully answered, or is still being received."""
    dispatcher = server.task_dispatcher
    if dispatcher.active_count or dispatcher.queue:
        return True
    return any(
        channel.requests or channel.total_outbufs_len or channel.request is not None
        for channel in list(server.active_channels.values())
    )


def _close_idle(server: Server) -> None:
    for channel in list(server.active_channels.values()):
        if not (channel.requests or channel.total_outbufs_len or channel.request is not None):
            channel.handle_close()


def _close_all(server: Server) -> None:
    for channel in list(server.active_channels.values()):
        channel.handle_close()
    server.trigger.close()  # the last thing in the map: the I/O loop ends


def _allow_open_files(wanted: int) -> None:
    """Raise this process's soft limit on open files towards `wanted` (a connection is one), within its
    hard limit; a systemd unit's default soft limit is 1,024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
