"""The HTTP server (http_server.py, waitress) under `python main.py` and the production command
(`python main.py web` beside `python main.py worker`): slow and silent clients cost no request thread,
so signed deliveries are acknowledged within a second while they are held open; ambiguous framing is
refused with a short JSON answer; and a stop answers the deliveries already received before it exits.

Everything runs on 127.0.0.1, with bounded numbers of connections and bounded times.
"""

import http.client
import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from support.processes import Launch, Process, process_env, wait_until
from support.standin import ROUTE_ID

import http_server
from inbox import Inbox, SqliteDatabase
from signatures import new_message_id, signed_headers

HOST = "127.0.0.1"
IDLE = 200  # connections that send nothing
SLOW = 40  # connections that send a byte every SLOW_INTERVAL (half in their headers, half in a body): 5 × THREADS
SLOW_INTERVAL = 1.0
ACK_WITHIN = 1.0  # seconds
PROBES = 20

COMMANDS = {
    "python main.py": [["main.py"]],
    "main.py web + main.py worker": [["main.py", "web"], ["main.py", "worker"]],
}


def start(launch: Launch, command: str, environ: dict[str, str], port: int) -> list[Process]:
    env = process_env(environ, PORT=str(port))
    processes = [launch(args, env) for args in COMMANDS[command]]
    processes[0].wait_healthy(f"http://{HOST}:{port}")
    return processes


def deliver(port: int, secret: str, msg_id: str | None = None, timeout: float = 10) -> tuple[int | None, float]:
    """One signed delivery on a new connection: its status (None when there was no answer) and seconds."""
    body = json.dumps({"type": "route.optimized", "request_id": ROUTE_ID})
    headers = signed_headers(secret, body, msg_id or new_message_id())
    started = time.monotonic()
    connection = http.client.HTTPConnection(HOST, port, timeout=timeout)
    try:
        connection.request("POST", "/webhook/route", body, headers)
        response = connection.getresponse()
        response.read()
        return response.status, time.monotonic() - started
    except (OSError, http.client.HTTPException):
        return None, time.monotonic() - started
    finally:
        connection.close()


def raw(port: int, request: bytes, timeout: float = 5) -> tuple[int, dict[str, str], bytes]:
    """Send `request` as it is; return the status, the headers (lower-case names) and the body."""
    answer = b""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(request)
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (h.partition(":") for h in header_lines)}
    return int(status_line.split()[1]), headers, body


def signed_lines(secret: str, body: bytes | str, msg_id: str | None = None) -> str:
    """The signature headers of `body` as header lines (request_head gives the content type)."""
    headers = signed_headers(secret, body, msg_id)
    return "".join(f"{name}: {value}\r\n" for name, value in headers.items() if name != "content-type")


def request_head(extra: str) -> bytes:
    return f"POST /webhook/route HTTP/1.1\r\nHost: {HOST}\r\nContent-Type: application/json\r\n{extra}".encode()


@contextmanager
def held_open(port: int, idle: int, slow: int) -> Iterator[list[socket.socket]]:
    """`idle` connections that send nothing and `slow` ones that send a byte every SLOW_INTERVAL, open
    until the block ends."""
    idle_socks = [socket.create_connection((HOST, port), timeout=5) for _ in range(idle)]
    slow_socks = []
    for index in range(slow):
        sock = socket.create_connection((HOST, port), timeout=5)
        sock.sendall(request_head("X-Slow: ") if index % 2 else request_head("Content-Length: 4096\r\n\r\n"))
        slow_socks.append(sock)
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(SLOW_INTERVAL):
            for sock in slow_socks:
                sock.send(b"a")

    trickler = threading.Thread(target=trickle, daemon=True)
    trickler.start()
    try:
        yield idle_socks + slow_socks
    finally:
        stop.set()
        trickler.join(timeout=10)
        for sock in idle_socks + slow_socks:
            sock.close()


def still_open(sock: socket.socket) -> bool:
    """Whether the server has not closed `sock` (no EOF waiting on it)."""
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.setblocking(True)


# As real processes ----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("command", list(COMMANDS))
def test_deliveries_are_acknowledged_within_a_second_while_slow_and_idle_clients_are_held(
    launch, environ, secret, port, command
):
    """200 silent and 40 slow connections (5 × the request threads) held open: each of 20 signed deliveries
    is answered 200 within 1 s, and the held connections are still open."""
    processes = start(launch, command, environ, port)
    with held_open(port, IDLE, SLOW) as held:
        time.sleep(2 * SLOW_INTERVAL)  # every slow connection has sent something since it opened
        answers = [deliver(port, secret, timeout=5) for _ in range(PROBES)]
        assert all(still_open(sock) for sock in held)
    late = [(status, round(seconds, 3)) for status, seconds in answers if status != 200 or seconds > ACK_WITHIN]
    assert not late, f"answers not 200 within {ACK_WITHIN} s: {late}\n{processes[0].log()[-2000:]}"
    assert f"listening on http://{HOST}:{port}/webhook" in processes[0].log()


@pytest.mark.slow
@pytest.mark.parametrize("command", list(COMMANDS))
def test_sigterm_answers_the_deliveries_in_flight_then_exits_cleanly(launch, environ, secret, port, command):
    """Two deliveries held inside the service (their commit waits for the inbox's writers' lock) when SIGTERM
    comes: new connections are refused at once, the two are answered 200 once the lock is free, both are
    stored, and every process exits 0."""
    processes = start(launch, command, environ, port)
    msg_ids = [new_message_id(), new_message_id()]
    answers: dict[str, int | None] = {}

    def send(msg_id: str) -> None:
        answers[msg_id] = deliver(port, secret, msg_id, timeout=20)[0]

    senders = [threading.Thread(target=send, args=(msg_id,)) for msg_id in msg_ids]
    database = SqliteDatabase(environ["DATABASE_URL"])
    try:
        with database.turn():  # every writer of the service waits for it now
            for sender in senders:
                sender.start()
            time.sleep(1.0)  # both requests have been read, and wait for their commit
            for process in processes:
                process.signal(signal.SIGTERM)
            wait_until(lambda: refused(port), "the server to stop accepting connections", 5, watch=processes[:1])
            time.sleep(0.5)
            assert processes[0].running(), "the server exited with deliveries in flight"
            assert not answers
    finally:
        database.close()
    for sender in senders:
        sender.join(timeout=20)
    assert answers == dict.fromkeys(msg_ids, 200)
    for process in processes:
        assert process.wait(timeout=20) == 0, process.log()[-3000:]
    inbox = Inbox.open(environ["DATABASE_URL"])
    try:
        assert all(inbox.by_message_id(msg_id) is not None for msg_id in msg_ids)
    finally:
        inbox.close()
    assert "received SIGTERM: stopping" in processes[0].log()


def refused(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False


@pytest.mark.slow
def test_ambiguous_framing_is_refused_with_json_by_the_production_command(launch, environ, secret, port, inbox):
    """`python main.py web`: Transfer-Encoding with Content-Length, and two different Content-Lengths, are
    answered 400 with a JSON body, and nothing is stored."""
    start(launch, "main.py web + main.py worker", environ, port)
    body = json.dumps({"request_id": ROUTE_ID})
    signed = signed_lines(secret, body)
    length = f"Content-Length: {len(body)}\r\n"
    both = raw(port, request_head(f"{signed}{length}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"))
    two = raw(port, request_head(f"{signed}{length}Content-Length: 2\r\n\r\n{body}"))
    for status, headers, answer in (both, two):
        assert status == 400
        assert headers["content-type"] == "application/json"
        assert json.loads(answer) == {"error": "bad request"}
    assert inbox.latest(None, 10) == []


# In this process, with a small app ------------------------------------------------------------------


def echo_app(environ, start_response):
    """A WSGI app answering 200 with the size of the body it read."""
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({"read": len(body)}).encode()]


@contextmanager
def serving(port: int, app=echo_app, max_body_bytes: int = 1024) -> Iterator[http_server.WebServer]:
    server = http_server.WebServer(app, HOST, port, max_body_bytes)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        thread.join(timeout=10)
    assert not thread.is_alive()


@pytest.mark.parametrize(
    ("extra", "status", "error"),
    [
        ("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400, "bad request"),
        ("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400, "bad request"),
        ("Content-Length: 2\r\nContent-Length: 3\r\n\r\n{} ", 400, "bad request"),
        ("Content-Length: -1\r\n\r\n", 400, "bad request"),
        ("Transfer-Encoding: gzip\r\n\r\n", 501, "transfer-encoding not supported"),
        ("Content-Length: 1025\r\n\r\n", 413, "payload too large"),
    ],
    ids=["te-then-cl", "cl-then-te", "two-lengths", "negative-length", "unknown-coding", "too-large"],
)
def test_the_servers_own_refusals_are_short_json(port, extra, status, error):
    with serving(port):
        got, headers, body = raw(port, request_head(extra))
    assert (got, headers["content-type"], json.loads(body)) == (status, "application/json", {"error": error})
    assert headers["connection"] == "close"


def test_headers_over_the_limit_are_answered_431_json(port):
    # Exactly MAX_HEADER_BYTES and no more: the server reads every byte sent before it answers, so its close
    # is not a reset (the answer to a longer request can be lost to one).
    head = request_head("X-Big: ")
    request = head + b"a" * (http_server.MAX_HEADER_BYTES - len(head))
    with serving(port):
        status, headers, body = raw(port, request)
    assert (status, headers["content-type"]) == (431, "application/json")
    assert json.loads(body) == {"error": "request header fields too large"}


def test_http_1_0_with_both_lengths_is_refused_too(port):
    with serving(port):
        status, _, body = raw(
            port, b"POST / HTTP/1.0\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
        )
    assert (status, json.loads(body)) == (400, {"error": "bad request"})


def test_a_chunked_body_and_a_body_at_the_limit_reach_the_app_whole(port):
    with serving(port, max_body_bytes=1024):
        chunked = raw(
            port, request_head("Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
        )
        at_limit = raw(port, request_head("Content-Length: 1024\r\nConnection: close\r\n\r\n") + b"x" * 1024)
    assert (chunked[0], json.loads(chunked[2])) == (200, {"read": 3})
    assert (at_limit[0], json.loads(at_limit[2])) == (200, {"read": 1024})


def test_a_request_not_whole_in_time_is_answered_408_json(port, monkeypatch):
    """A request still incomplete REQUEST_SECONDS after its first byte gets 408 and is closed; a silent
    connection is left to the idle timeout."""
    monkeypatch.setattr(http_server, "REQUEST_SECONDS", 1)
    with serving(port), socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(request_head("Content-Length: 100\r\n\r\n{"))
        answer = b""
        while chunk := sock.recv(4096):  # the server closes it after its answer
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 ")
    assert b"Content-Type: application/json" in head
    assert json.loads(body) == {"error": "request timeout"}


def test_shutdown_answers_a_request_in_progress_and_refuses_new_connections(port):
    """A request the app is still working on when shutdown() starts is answered; shutdown returns after it."""
    entered, release = threading.Event(), threading.Event()

    def slow_app(environ, start_response):
        entered.set()
        release.wait(10)
        start_response("200 OK", [("Content-Type", "application/json")])
        return [b"{}"]

    answers: list[int] = []

    def call() -> None:
        connection = http.client.HTTPConnection(HOST, port, timeout=10)
        connection.request("POST", "/", b"{}", {"Content-Type": "application/json"})
        answers.append(connection.getresponse().status)
        connection.close()

    server = http_server.WebServer(slow_app, HOST, port, 1024)
    serving_thread = threading.Thread(target=server.serve_forever, daemon=True)
    serving_thread.start()
    caller = threading.Thread(target=call)
    caller.start()
    assert entered.wait(5)
    stopping = threading.Thread(target=server.shutdown)
    stopping.start()
    wait_until(lambda: refused(port), "the listening socket to close", 5)
    assert stopping.is_alive()  # still waiting for the request
    release.set()
    caller.join(timeout=10)
    stopping.join(timeout=10)
    serving_thread.join(timeout=10)
    assert answers == [200]
    assert not stopping.is_alive()
    assert not serving_thread.is_alive()


# In this process, with the service's app -----------------------------------------------------------


def chunked_delivery(secret: str, body: bytes, msg_id: str) -> bytes:
    """A signed delivery sent with Transfer-Encoding: chunked and no Content-Length, in two chunks."""
    signed = signed_lines(secret, body, msg_id)
    half = len(body) // 2
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:half], body[half:]))
    return request_head(f"{signed}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n") + chunks + b"0\r\n\r\n"


def test_a_chunked_delivery_is_verified_and_stored_whole(app, services, secret, port):
    """The server hands the app the whole dechunked body: the signature over it verifies and it is stored."""
    msg_id = new_message_id()
    body = json.dumps({"type": "route.optimized", "request_id": ROUTE_ID}).encode()
    with serving(port, app, services.settings.max_body_bytes):
        status, _, answer = raw(port, chunked_delivery(secret, body, msg_id))
    assert (status, json.loads(answer)) == (200, {"status": "received"})
    assert services.inbox.by_message_id(msg_id).body == body


def test_a_chunked_body_over_the_limit_is_refused_413(app, services, secret, port):
    body = b'{"request_id": "' + b"a" * services.settings.max_body_bytes + b'"}'
    with serving(port, app, services.settings.max_body_bytes):
        status, headers, answer = raw(port, chunked_delivery(secret, body, new_message_id()))
    assert (status, headers["content-type"], json.loads(answer)) == (
        413,
        "application/json",
        {"error": "payload too large"},
    )
    assert services.inbox.latest(None, 10) == []


def test_concurrent_deliveries_are_each_acknowledged_and_stored(app, services, secret, port):
    """16 deliveries at once over the request threads (which share commits): each answered 200 and stored."""
    msg_ids = [new_message_id() for _ in range(16)]
    with serving(port, app, services.settings.max_body_bytes):
        answers: list[int | None] = [None] * len(msg_ids)

        def send(index: int) -> None:
            answers[index] = deliver(port, secret, msg_ids[index])[0]

        senders = [threading.Thread(target=send, args=(i,)) for i in range(len(msg_ids))]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(timeout=20)
    assert answers == [200] * len(msg_ids)
    assert all(services.inbox.by_message_id(msg_id) is not None for msg_id in msg_ids)
