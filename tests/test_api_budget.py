"""Every OptiPick API call has a budget: a deadline for the whole call, however the answer trickles in,
and a cap on its size (MAX_RESULT_BYTES); a 200 whose body cannot be read is dead after two attempts.

The misbehaving APIs are real HTTP servers on loopback, in a thread, that write their answers by hand.
"""

import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import defaults
from config import SETTING_NAMES, load_settings
from errors import ApiUnavailable, ResultNotFound
from event_types import Kind
from inbox import Status
from optipick_client import OptiPickClient
from optipick_standin import example_result
from processing import Processor
from services import Services
from signatures import new_message_id

PROJECT_DIR = Path(__file__).resolve().parent.parent
REQUEST_ID = "67d3f1a95e593173d0a1b2c4"
DEADLINE = 1.0  # seconds: the budget the tests give their clients, instead of the default 20 s
SLACK = 1.0  # seconds a cut-off call may take past its deadline on a busy machine
TRICKLE_SECONDS = 0.5  # one byte this often
TRICKLE_BYTES = 40  # and no more, so a client that never gives up still ends (after 20 s)
HUGE_BYTES = 200 * 1024 * 1024
BLOCK = b'{"pick_id": "PK-000481-07", "location_id": "A-01-02", "optim_sequence": 0},\n' * 800


class Misbehaving(ThreadingHTTPServer):
    """An API that answers every GET with `behaviour`, and notices when the client hangs up."""

    daemon_threads = True

    def __init__(self, behaviour: Callable[[BaseHTTPRequestHandler], None]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.behaviour = behaviour
        self.hung_up = threading.Event()
        self.sent = 0  # body bytes written
        self.headers_seen: list[dict[str, str]] = []
        self.client_ports: set[int] = set()  # one per connection
        self.paths: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Misbehaving

    def do_GET(self) -> None:
        self.server.headers_seen.append(dict(self.headers))
        self.server.client_ports.add(self.client_address[1])
        self.server.paths.append(self.path)
        try:
            self.server.behaviour(self)
        except OSError:  # the client closed the connection: what these tests wait for
            self.server.hung_up.set()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serving(behaviour: Callable[[BaseHTTPRequestHandler], None]) -> Iterator[Misbehaving]:
    server = Misbehaving(behaviour)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def trickled_headers(handler: BaseHTTPRequestHandler) -> None:
    """A status line, then a header line one byte at a time."""
    handler.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
    for _ in range(TRICKLE_BYTES):
        time.sleep(TRICKLE_SECONDS)
        handler.wfile.write(b"x")


def trickled_body(handler: BaseHTTPRequestHandler) -> None:
    """Headers at once, then a body of declared length one byte at a time."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(TRICKLE_BYTES))
    handler.end_headers()
    for _ in range(TRICKLE_BYTES):
        time.sleep(TRICKLE_SECONDS)
        handler.wfile.write(b" ")


def trickled_chunks(handler: BaseHTTPRequestHandler) -> None:
    """A chunked body whose chunk-size lines come one byte at a time."""
    handler.send_response(200)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    for _ in range(TRICKLE_BYTES):
        time.sleep(TRICKLE_SECONDS)
        handler.wfile.write(b"0")


def huge(declared: bool) -> Callable[[BaseHTTPRequestHandler], None]:
    """200 MB of JSON-ish bytes, made as they are sent, with a Content-Length or chunked."""

    def answer(handler: BaseHTTPRequestHandler) -> None:
        server: Misbehaving = handler.server  # type: ignore[assignment]
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        if declared:
            handler.send_header("Content-Length", str(HUGE_BYTES))
        else:
            handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()

        def send(data: bytes) -> None:
            handler.wfile.write(data if declared else b"%x\r\n%s\r\n" % (len(data), data))
            server.sent += len(data)

        send(b'{"picks": [\n')
        while server.sent < HUGE_BYTES:
            send(BLOCK)
        if not declared:
            handler.wfile.write(b"0\r\n\r\n")

    return answer


def kept_alive(handler: BaseHTTPRequestHandler) -> None:
    """The example result, or a small 404 for another request id, each with its length, on a kept-alive connection."""
    found = handler.path.endswith(REQUEST_ID)
    body = json.dumps(example_result("route", REQUEST_ID) if found else {"detail": "Request not found"}).encode()
    handler.send_response(200 if found else 404)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def deliver(sender, services: Services, request_id: str = REQUEST_ID) -> int:
    """A signed route delivery, acknowledged; its inbox row's id."""
    msg_id = new_message_id()
    response = sender.send({"request_id": request_id}, path="/webhook/route", msg_id=msg_id)
    assert response.status_code == 200, response.get_json()
    stored = services.inbox.by_message_id(msg_id)
    assert stored is not None
    return stored.id


# The deadline -------------------------------------------------------------------------------------


@pytest.mark.parametrize("behaviour", [trickled_headers, trickled_body, trickled_chunks])
def test_a_trickling_answer_is_cut_off_at_the_deadline(behaviour, settings):
    """An answer that trickles in a byte every 0.5 s (headers, body or chunk framing) never trips a read
    timeout, but the call gives up at its deadline, says so, and closes the connection."""
    with serving(behaviour) as server:
        client = OptiPickClient(server.url, settings.optipick_api_key, deadline=DEADLINE)
        started = time.monotonic()
        try:
            with pytest.raises(ApiUnavailable) as raised:
                client.fetch(Kind.ROUTE, REQUEST_ID)
            elapsed = time.monotonic() - started
        finally:
            client.close()
        assert server.hung_up.wait(3 * TRICKLE_SECONDS), "the client did not close the connection"
    assert str(raised.value) == f"GET /optimize/route/{REQUEST_ID} took longer than 1 s in all"
    assert DEADLINE - 0.1 < elapsed < DEADLINE + SLACK


def test_the_deadline_bounds_connecting_and_reading_together(settings):
    """Read timeouts longer than the deadline do not stretch it: no single wait outlives the whole call."""
    with serving(trickled_body) as server:
        client = OptiPickClient(server.url, settings.optipick_api_key, timeout=(30, 30), deadline=DEADLINE)
        started = time.monotonic()
        try:
            with pytest.raises(ApiUnavailable, match="took longer than 1 s in all"):
                client.fetch(Kind.ROUTE, REQUEST_ID)
        finally:
            client.close()
    assert time.monotonic() - started < DEADLINE + SLACK


def test_a_finished_calls_deadline_cuts_nothing_later(settings):
    """A call's deadline passing after it finished leaves its kept-alive connection alone: the next calls
    on it are answered, and the key travels in X-API-KEY only, never in the URL."""
    with serving(kept_alive) as server:
        client = OptiPickClient(server.url, settings.optipick_api_key, deadline=0.3)
        try:
            assert client.fetch(Kind.ROUTE, REQUEST_ID).request_id == REQUEST_ID
            time.sleep(0.4)  # the first call's deadline passes while its connection waits in the pool
            assert client.fetch(Kind.ROUTE, REQUEST_ID).request_id == REQUEST_ID
            assert client.fetch(Kind.ROUTE, REQUEST_ID).request_id == REQUEST_ID
        finally:
            client.close()
    assert len(server.client_ports) == 1
    assert [headers["X-API-KEY"] for headers in server.headers_seen] == [settings.optipick_api_key] * 3
    assert server.paths == [f"/optimize/route/{REQUEST_ID}"] * 3


def test_answers_good_and_bad_leave_the_connection_to_the_next_call(settings):
    """A streamed 200 read to its end, and a small 404 whose body is not used, both give their kept-alive
    connection back for the next call."""
    with serving(kept_alive) as server:
        client = OptiPickClient(server.url, settings.optipick_api_key, deadline=DEADLINE)
        try:
            assert client.fetch(Kind.ROUTE, REQUEST_ID).request_id == REQUEST_ID
            with pytest.raises(ResultNotFound):
                client.fetch(Kind.ROUTE, "0" * 24)
            assert client.fetch(Kind.ROUTE, REQUEST_ID).request_id == REQUEST_ID
        finally:
            client.close()
    assert len(server.headers_seen) == 3
    assert len(server.client_ports) == 1


def test_the_worker_thread_comes_back_from_a_trickling_api(services, sender):
    """process() returns within the deadline against a trickling API, leaving the event retrying with the reason."""
    event_id = deliver(sender, services)
    with serving(trickled_body) as server:
        client = OptiPickClient(server.url, services.settings.optipick_api_key, deadline=DEADLINE)
        processor = Processor(services.inbox, client, services.registry, services.queue.enqueue)
        outcome: list[Status | None] = []
        worker = threading.Thread(target=lambda: outcome.append(processor.process(event_id)), daemon=True)
        try:
            worker.start()
            worker.join(DEADLINE + SLACK + 2)
        finally:
            client.close()
        assert not worker.is_alive(), "process() is still waiting on the API"
        assert server.headers_seen[0]["X-API-KEY"] == services.settings.optipick_api_key
    assert outcome == [Status.RETRYING]
    row = services.inbox.get(event_id)
    assert f"GET /optimize/route/{REQUEST_ID} took longer than 1 s in all" in row.last_error


# The size cap -------------------------------------------------------------------------------------


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_huge_answer_is_refused_at_max_result_bytes(declared, settings):
    """A 200 MB answer is refused once it passes max_result_bytes (at once when its Content-Length says so),
    and the connection is closed long before the server has sent it all."""
    limit = 1024 * 1024
    with serving(huge(declared)) as server:
        client = OptiPickClient(server.url, settings.optipick_api_key, max_result_bytes=limit)
        try:
            with pytest.raises(ApiUnavailable) as raised:
                client.fetch(Kind.ROUTE, REQUEST_ID)
        finally:
            client.close()
        assert server.hung_up.wait(5), "the client did not close the connection"
    assert str(raised.value) == (
        f"GET /optimize/route/{REQUEST_ID} answer is larger than MAX_RESULT_BYTES ({limit} bytes)"
    )
    assert server.sent < 20 * limit  # what the socket buffers took before the client hung up


def test_max_result_bytes_is_the_setting_and_the_event_retries(environ, services, sender, api):
    """MAX_RESULT_BYTES reaches the worker's client; an answer over it is retried like a server error."""
    api.add_result("route", REQUEST_ID)  # the example result, about 3 kB
    event_id = deliver(sender, services)
    small = Services.build(load_settings({**environ, "MAX_RESULT_BYTES": "1024"}, env_file=None))
    try:
        assert small.processor.process(event_id, now=datetime.now(UTC)) is Status.RETRYING
    finally:
        small.close()
    row = services.inbox.get(event_id)
    assert "answer is larger than MAX_RESULT_BYTES (1024 bytes)" in row.last_error
    assert row.attempts == 1


WORKER = """
import json, sys
from config import load_settings
from services import Services

services = Services.build(load_settings(env_file=None))
try:
    status = services.processor.process(int(sys.argv[1]))
    row = services.inbox.get(int(sys.argv[1]))
finally:
    services.close()
with open("/proc/self/status") as status_file:
    peak = next(int(line.split()[1]) for line in status_file if line.startswith("VmHWM:"))
print(json.dumps({"status": str(status), "last_error": row.last_error, "peak_kib": peak}))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak RSS from /proc (Linux)")
def test_the_worker_memory_stays_small_reading_a_huge_answer(environ, services, sender):
    """A worker process fetching a 200 MB answer, with the default MAX_RESULT_BYTES, peaks under 150 MB
    of resident memory (VmHWM), and leaves the event retrying with the reason."""
    event_id = deliver(sender, services)
    with serving(huge(declared=False)) as server:
        env = dict.fromkeys(SETTING_NAMES, "") | environ | {"OPTIPICK_API_URL": server.url}
        run = subprocess.run(
            [sys.executable, "-c", WORKER, str(event_id)],
            cwd=PROJECT_DIR,
            env={"PATH": "/usr/bin:/bin", **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads(run.stdout.splitlines()[-1])
    assert report["status"] == "retrying"
    assert f"answer is larger than MAX_RESULT_BYTES ({defaults.MAX_RESULT_BYTES} bytes)" in report["last_error"]
    assert report["peak_kib"] < 150 * 1024, f"the worker peaked at {report['peak_kib'] // 1024} MB"


# Answers that cannot be read ----------------------------------------------------------------------

DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(
            '{"request_id": "x", "picks": [], "asis_distance": NaN}', "with NaN where a number goes", id="nan"
        ),
        pytest.param('{"picks": [{"quantity": Infinity}]}', "with Infinity where a number goes", id="infinity"),
        pytest.param('{"picks": [], "optimal_distance": -Infinity}', "with -Infinity where a number", id="-infinity"),
        pytest.param(DEEP, "with JSON nested too deeply to read", id="deep"),
        pytest.param(
            '{"picks": [{"a": ' * 5000 + "1" + "}]" * 5000 + "}",
            "with JSON nested too deeply to read",
            id="deep-objects",
        ),
        pytest.param("<html><body>Bad gateway</body></html>", "with a body that is not JSON", id="html"),
        pytest.param(b'{"picks": [], "site_name": "\xff\xfe"}', "with a body that is not JSON", id="not-utf-8"),
    ],
)
def test_an_unreadable_200_is_dead_after_two_attempts(api, services, sender, body, reason):
    """A 200 whose body no parser reads is retried once, then dead with the reason, not retried for 21 hours."""
    api.fail_first("route", REQUEST_ID, (200, {}, body), (200, {}, body))
    event_id = deliver(sender, services)
    now = datetime.now(UTC)
    assert services.processor.process(event_id, now=now) is Status.RETRYING
    assert reason in services.inbox.get(event_id).last_error
    later = now + timedelta(seconds=defaults.RETRY_DELAYS[0])
    assert services.processor.process(event_id, now=later) is Status.DEAD
    row = services.inbox.get(event_id)
    assert f"GET /optimize/route/{REQUEST_ID} answered 200 {reason}" in row.last_error
    assert row.last_error.endswith("; gave up after 2 attempts")
    assert api.fetches[("route", REQUEST_ID)] == 2


def test_an_unreadable_answer_then_a_good_one_is_done(api, services, sender):
    """One unreadable answer (mangled on the way) costs an attempt; the next good answer makes the event done."""
    api.add_result("route", REQUEST_ID)
    api.fail_first("route", REQUEST_ID, (200, {}, '{"picks": [], "asis_distance": NaN}'))
    event_id = deliver(sender, services)
    now = datetime.now(UTC)
    assert services.processor.process(event_id, now=now) is Status.RETRYING
    later = now + timedelta(seconds=defaults.RETRY_DELAYS[0])
    assert services.processor.process(event_id, now=later) is Status.DONE


def test_json_that_is_not_a_result_keeps_the_whole_retry_budget(api, services, sender):
    """Readable JSON that is not a result (it may be an answer not ready yet) is retried past two attempts."""
    api.fail_first("route", REQUEST_ID, *[(200, {}, {"detail": "pending"})] * 3)
    event_id = deliver(sender, services)
    now = datetime.now(UTC)
    for attempt in range(3):
        later = now + timedelta(seconds=sum(defaults.RETRY_DELAYS[:attempt]))
        assert services.processor.process(event_id, now=later) is Status.RETRYING
    assert "unreadable" in services.inbox.get(event_id).last_error


def test_a_good_answer_is_read_whole(api, settings):
    """Within the budget, the streamed answer is the document the API sent."""
    document = api.add_result("route", REQUEST_ID)
    client = OptiPickClient(
        api.url, settings.optipick_api_key, deadline=DEADLINE, max_result_bytes=len(json.dumps(document))
    )
    try:
        assert client.fetch(Kind.ROUTE, REQUEST_ID).raw == document
    finally:
        client.close()
    assert document == example_result("route", REQUEST_ID)
