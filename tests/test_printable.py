"""Logs and listings cannot be forged: every value from outside (a request's path, method and headers, a
payload's fields, the API's texts, an exception's message) is logged and printed through
printable.printable, which shows control characters, escape sequences, line separators and bidi
overrides as escapes and cuts to a length.

The request path is sent raw over a socket to the real app served by werkzeug, since test clients refuse
such paths; the API's texts come from the stand-in API; `events` and `show` run through the real CLI.
"""

import json
import logging
import random
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from werkzeug.serving import make_server

from config import SETTING_NAMES
from inbox import Status
from main import cli
from optipick_standin import example_result
from printable import CUT, DEFAULT_LIMIT, PrintableTracebacks, printable
from signatures import new_message_id

PROJECT_DIR = Path(__file__).resolve().parent.parent
REQUEST_ID = "67d3f1a95e593173d0a1b2c4"
# A line that, printed raw after a newline, passes for the service's own report of a dead event; then
# an escape sequence that would erase the real line above it and colour what follows.
FORGED = "2026-01-01 00:00:00,000 ERROR   processing: msg_forged: dead after attempt 8"
ERASE_AND_COLOUR = "\x1b[1A\x1b[2K\x1b[31m"
# What a terminal or a log reader would act on, anywhere in the output.
ACTIVE = ("\n", "\r", "\x1b", "\x07", "\x9b", "\x9d", "\x85", "\u2028", "\u2029", "\u202e", "\x00")
# The service's loggers (werkzeug's access log is the test server's own: it escapes control characters
# itself, then colours the line with escape sequences of its own).
SERVICE_LOGGERS = ("webhook", "processing", "summary", "handlers.registry", "optipick_client")


# The helper ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        pytest.param("a\x00b", "a\\x00b", id="NUL"),
        pytest.param("\x01\x07\x08\x1f", "\\x01\\x07\\x08\\x1f", id="C0 controls"),
        pytest.param("line\nnext\rback\ttab", "line\\nnext\\rback\\ttab", id="newline, return, tab"),
        pytest.param("\x0b\x0c\x1c\x1d\x1e", "\\x0b\\x0c\\x1c\\x1d\\x1e", id="what splitlines splits on"),
        pytest.param("del\x7f", "del\\x7f", id="DEL"),
        pytest.param("\x80\x85\x9f", "\\x80\\x85\\x9f", id="C1 controls"),
        pytest.param("\x9b31mred", "\\x9b31mred", id="C1 CSI"),
        pytest.param("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m", id="ESC [ colour"),
        pytest.param("\x1b[1A\x1b[2K\x1b[2J", "\\x1b[1A\\x1b[2K\\x1b[2J", id="ESC [ erase"),
        pytest.param("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07", id="OSC title, BEL"),
        pytest.param("\x1b]8;;https://evil\x1b\\link", "\\x1b]8;;https://evil\\x1b\\link", id="OSC hyperlink, ST"),
        pytest.param("\x9d0;pwned\x9c", "\\x9d0;pwned\\x9c", id="C1 OSC and ST"),
        pytest.param("a\u2028b\u2029c", "a\\u2028b\\u2029c", id="line and paragraph separators"),
        pytest.param("invoice\u202efdp.exe", "invoice\\u202efdp.exe", id="bidi override"),
        pytest.param("\u2066\u2067\u2068\u2069\u200f", "\\u2066\\u2067\\u2068\\u2069\\u200f", id="bidi isolates"),
        pytest.param("zero\u200bwidth\ufeff", "zero\\u200bwidth\\ufeff", id="invisible format characters"),
        pytest.param("lone \ud800", "lone \\ud800", id="surrogate"),
    ],
)
def test_each_kind_of_character_is_shown_as_its_escape(text, shown):
    """Each kind of character a terminal or a log reader acts on is written as its repr escape, without quotes."""
    assert printable(text) == shown
    assert printable(text).isprintable()


@pytest.mark.parametrize(
    "text",
    ["msg_2YbZ-09_x", "Lagerhalle Süd", "倉庫 7", "wave 🙂", "C:\\path\\n is two characters", "", "a b"],
)
def test_printable_text_is_left_as_it_is(text):
    """Printable text, non-ASCII and backslashes included, comes back unchanged."""
    assert printable(text) == text


def test_values_that_are_not_text_are_shown_as_text():
    """Numbers, None and exceptions are shown as str() shows them, printable."""
    assert printable(42) == "42"
    assert printable(None) == "None"
    assert printable(ValueError("bad\nline")) == "bad\\nline"


def test_long_text_is_cut_to_the_limit_with_a_mark():
    """Text longer than the limit is cut to it, ending in …; limit=None keeps it whole."""
    assert printable("x" * 1000) == "x" * (DEFAULT_LIMIT - 1) + CUT
    assert printable("x" * 1000, limit=10) == "x" * 9 + CUT
    assert printable("x" * 10, limit=10) == "x" * 10
    assert printable("x\n" * 1000, limit=None) == "x\\n" * 1000


@pytest.mark.parametrize("limit", range(1, 16))
def test_a_cut_never_splits_an_escape(limit):
    """Cut text is at most `limit` characters, and what it keeps is whole escapes of the text's start."""
    whole = printable("ab\x1b[31m\u2028cd\n", limit=None)
    cut = printable("ab\x1b[31m\u2028cd\n", limit=limit)
    assert len(cut) <= limit
    if cut != whole:
        kept = cut.removesuffix(CUT)
        assert cut.endswith(CUT)
        assert whole.startswith(kept)
        assert not kept.endswith(("\\", "\\x", "\\x1", "\\u20"))


def test_any_text_comes_out_printable_on_one_line_and_twice_is_once():
    """Whatever goes in, including random code points from every plane, comes out printable, on one line,
    and printing it again changes nothing."""
    generator = random.Random(12)
    for _ in range(300):
        text = "".join(chr(generator.randrange(0x110000)) for _ in range(generator.randrange(1, 40)))
        shown = printable(text, limit=None)
        assert shown.isprintable()
        assert len(shown.splitlines()) <= 1
        assert printable(shown, limit=None) == shown


# Tracebacks in the service's log ------------------------------------------------------------------


def raise_forged() -> None:
    try:
        raise KeyError(f"site\n{FORGED}{ERASE_AND_COLOUR}")
    except KeyError as cause:
        raise RuntimeError(f"handler gave up on\n{FORGED}") from cause


def test_a_logged_traceback_keeps_its_lines_but_not_its_exceptions_newlines():
    """The service's log formatter prints a traceback line by line, each exception's own text (the cause's
    too) printable: a message cannot forge a log line or carry an escape sequence."""
    try:
        raise_forged()
    except RuntimeError:
        record = logging.LogRecord(
            "handlers.registry", logging.ERROR, __file__, 1, "handler failed", (), sys.exc_info()
        )
    text = PrintableTracebacks("%(levelname)s %(name)s: %(message)s").format(record)
    lines = text.split("\n")
    assert lines[0] == "ERROR handlers.registry: handler failed"
    assert lines.count("Traceback (most recent call last):") == 2
    assert "The above exception was the direct cause of the following exception:" in lines
    assert any(line.startswith('  File "') and "raise_forged" in line for line in lines)
    assert f"KeyError: 'site\\n{FORGED}\\x1b[1A\\x1b[2K\\x1b[31m'" in lines
    assert f"RuntimeError: handler gave up on\\n{FORGED}" in lines
    assert not any(line.startswith(FORGED) for line in lines)
    assert not any(character in text for character in ACTIVE if character != "\n")


FORGED_MESSAGE = f"bad\n{FORGED}{ERASE_AND_COLOUR}"
LOGGING_SCRIPT = f"""
import logging
from config import configure_logging
configure_logging("INFO")
try:
    raise ValueError({FORGED_MESSAGE!r})
except ValueError:
    logging.getLogger("handlers.registry").exception("handler failed")
"""


def test_the_configured_log_prints_tracebacks_printable():
    """configure_logging, which every entry point calls, gives the log that formatter."""
    run = subprocess.run(
        [sys.executable, "-c", LOGGING_SCRIPT], cwd=PROJECT_DIR, capture_output=True, text=True, timeout=30, check=True
    )
    assert "Traceback (most recent call last):" in run.stderr
    assert f"ValueError: bad\\n{FORGED}\\x1b[1A\\x1b[2K\\x1b[31m" in run.stderr
    assert not any(line.startswith(FORGED) for line in run.stderr.splitlines())
    assert "\x1b" not in run.stderr


# The request path, method and headers -------------------------------------------------------------


def service_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.name.startswith(SERVICE_LOGGERS)]


def assert_unforgeable(text: str) -> None:
    """Nothing in `text` acts on a terminal, and the forged line starts no line of its own."""
    assert not any(character in text for character in ACTIVE if character != "\n"), text
    assert not any(line.lstrip().startswith(FORGED) for line in text.split("\n")), text


@contextmanager
def serving(app) -> Iterator[int]:
    """The app behind werkzeug's real server, as `python main.py` serves it; its port."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.port
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def send_raw(port: int, request_line: bytes, headers: dict[str, bytes], body: bytes = b"") -> int:
    """Send one request byte for byte, with no client in between to refuse it; the status it got."""
    head = request_line + b"\r\n"
    for name, value in {**headers, "Content-Length": str(len(body)).encode(), "Connection": b"close"}.items():
        head += name.encode() + b": " + value + b"\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(head + b"\r\n" + body)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    return int(answer.split(b" ", 2)[1])


def forged_path(line_break: bytes) -> bytes:
    """A path under /webhook/: escapes raw (the request line carries them as they are) and percent-encoded,
    then a line break and the forged line, percent-encoded as a sender can send them."""
    return b"/webhook/route" + ERASE_AND_COLOUR.encode() + b"%1B[2K" + line_break + FORGED.replace(" ", "%20").encode()


SHOWN_ESCAPES = "\\x1b[1A\\x1b[2K\\x1b[31m\\x1b[2K"
JSON = {"Content-Type": b"application/json"}
NEWLINE = forged_path(b"%0A")  # no route matches a newline: 404 whatever the method
SEPARATOR = forged_path(b"%E2%80%A8")  # U+2028, which the route's path part matches


@pytest.mark.parametrize(
    ("request_line", "headers", "status", "shown"),
    [
        pytest.param(
            b"POST " + NEWLINE + b" HTTP/1.1", JSON, 404, "POST /webhook/route" + SHOWN_ESCAPES + "\\n", id="404"
        ),
        pytest.param(
            b"GET " + SEPARATOR + b" HTTP/1.1", {}, 405, "GET /webhook/route" + SHOWN_ESCAPES + "\\u2028", id="405"
        ),
        pytest.param(
            b"POST " + SEPARATOR + b" HTTP/1.1",
            {"Content-Type": b"text/plain"},
            415,
            "POST /webhook/route" + SHOWN_ESCAPES + "\\u2028",
            id="415",
        ),
        pytest.param(
            b"\x1b[2KPUT\x9b31m /webhook HTTP/1.1", JSON, 405, "\\x1b[2KPUT\\x9b31M /webhook", id="method"
        ),  # upper-cased by werkzeug
    ],
)
def test_refused_requests_log_their_path_and_method_printable(app, caplog, request_line, headers, status, shown):
    """A request turned away before its signature is looked at logs its method and path with the line break
    and the escapes shown, so nobody can forge a log line or drive a terminal without a signature."""
    caplog.set_level(logging.INFO)
    with serving(app) as port:
        assert send_raw(port, request_line, headers, b"{}") == status
    [line] = [message for message in service_messages(caplog) if message.startswith("refused ")]
    assert_unforgeable(line)
    assert line.startswith(f"refused {shown}")
    assert f": {status} " in line


def test_a_rejected_delivery_logs_its_message_id_printable(app, caplog):
    """A delivery with a forged svix-id (an ESC, a C1 CSI) and a bad signature logs that id with them shown."""
    caplog.set_level(logging.INFO)
    headers = {
        **JSON,
        "svix-id": b"msg_\x1b[2K\x9b31m" + FORGED.encode(),
        "svix-timestamp": str(int(datetime.now(UTC).timestamp())).encode(),
        "svix-signature": b"v1,bm90IGEgc2lnbmF0dXJl",
    }
    with serving(app) as port:
        assert send_raw(port, b"POST /webhook HTTP/1.1", headers, b'{"request_id": "x"}') == 401
    [line] = [message for message in service_messages(caplog) if message.startswith("rejected delivery")]
    assert_unforgeable(line)
    assert line.startswith("rejected delivery 'msg_\\x1b[2K\\x9b31m2026-01-01")


# The API's texts, the payload and the headers, in the log and in `events` and `show` ----------------


def run_cli(environ: dict[str, str], *args: str) -> str:
    """`python main.py …` in-process, with exactly the settings of `environ`; its output."""
    result = CliRunner().invoke(cli, list(args), env=dict.fromkeys(SETTING_NAMES, "") | environ)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def forged_event(api, services, sender) -> str:
    """A delivery processed for real whose result's site_name, wave_id and error, payload and User-Agent
    header all carry the forged line and escapes; its message id."""
    document = example_result("route", REQUEST_ID)
    document["site_name"] = f"Example\x1b[2K\n{FORGED}"
    document["wave_id"] = "W-7\x1b]0;pwned\x07\u2028next"
    document["error"] = f"no route\n{FORGED}\x9b2K\u202eevil"
    api.add_result("route", REQUEST_ID, document)
    msg_id = new_message_id()
    payload = {"request_id": REQUEST_ID, "note": f"a\u2028{FORGED}\x1b[2K\x85\x9b31m\u202e"}
    response = sender.send(payload, path="/webhook/route.optimized", msg_id=msg_id, user_agent="Svix\x1b[2K\x9b31m")
    assert response.status_code == 200
    stored = services.inbox.by_message_id(msg_id)
    assert services.processor.process(stored.id, now=datetime.now(UTC)) is Status.DONE
    return msg_id


def test_the_apis_texts_are_logged_printable(api, services, sender, caplog):
    """The summary and the outcome log the API's site_name, wave_id and error with their newlines and escapes
    shown, and last_error stores them so."""
    caplog.set_level(logging.INFO)
    document = example_result("route", REQUEST_ID)
    document.update(site_name=f"Example\x1b[2K\n{FORGED}", wave_id="W\x1b]0;pwned\x07", error=f"x\n{FORGED}")
    api.add_result("route", REQUEST_ID, document)
    msg_id = new_message_id()
    assert sender.send({"request_id": REQUEST_ID}, path="/webhook/route", msg_id=msg_id).status_code == 200
    stored = services.inbox.by_message_id(msg_id)
    assert services.processor.process(stored.id, now=datetime.now(UTC)) is Status.DONE

    messages = service_messages(caplog)
    [summary] = [message for message in messages if message.startswith("route ")]
    assert summary == (
        f"route {REQUEST_ID} (Example\\x1b[2K\\n{FORGED}, wave W\\x1b]0;pwned\\x07): optimization failed: x\\n{FORGED}"
    )
    for message in messages:
        assert_unforgeable(message)
    row = services.inbox.get(stored.id)
    assert row.last_error == f"optimization failed: x\\n{FORGED}"
    assert row.result_summary == summary


def test_events_lists_the_apis_texts_printable(environ, forged_event):
    """`python main.py events` prints the stored error with its newline and escapes shown, on its own row."""
    output = run_cli(environ, "events")
    assert_unforgeable(output)
    header, row = output.strip("\n").split("\n")
    assert header.startswith("received_at")
    assert forged_event in row
    assert row.endswith(f"optimization failed: no route\\n{FORGED}\\x9b2K\\u202eevil")


def test_events_json_escapes_the_apis_texts(environ, forged_event):
    """`events --json` is JSON, whose strings escape such characters themselves, and keeps the stored text."""
    output = run_cli(environ, "events", "--json")
    assert_unforgeable(output.replace("\n", " "))
    [event] = json.loads(output)
    assert event["last_error"] == f"optimization failed: no route\\n{FORGED}\\x9b2K\\u202eevil"


def test_show_prints_the_apis_texts_payload_and_headers_printable(environ, forged_event):
    """`python main.py show` prints the error, the summary, the stored headers and the payload with every
    newline, escape sequence, separator and bidi override shown, each where it belongs."""
    output = run_cli(environ, "show", forged_event)
    assert_unforgeable(output)
    lines = output.split("\n")
    assert f"last error    optimization failed: no route\\n{FORGED}\\x9b2K\\u202eevil" in lines
    [result] = [line for line in lines if line.startswith("result        ")]
    assert f"(Example\\x1b[2K\\n{FORGED}, wave W-7\\x1b]0;pwned\\x07\\u2028next)" in result
    assert "  user-agent: Svix\\x1b[2K\\x9b31m" in lines
    payload = lines[lines.index("payload") + 1 :]
    assert payload[:4] == [
        "  {",
        f'    "request_id": "{REQUEST_ID}",',
        # json.dumps escapes the C0 controls itself (\u001b); printable shows the rest.
        f'    "note": "a\\u2028{FORGED}\\u001b[2K\\x85\\x9b31m\\u202e"',
        "  }",
    ]


def test_a_handlers_exception_text_is_logged_printable(services, sender, api, caplog):
    """A handler whose exception quotes the result logs that text printable, and last_error names the handler."""
    caplog.set_level(logging.INFO)
    api.add_result("route", REQUEST_ID)

    def quoting_handler(event, result) -> None:
        raise ValueError(f"unknown site\n{FORGED}{ERASE_AND_COLOUR}")

    services.registry.subscribe("*", quoting_handler)
    msg_id = new_message_id()
    assert sender.send({"request_id": REQUEST_ID}, path="/webhook/route", msg_id=msg_id).status_code == 200
    stored = services.inbox.by_message_id(msg_id)
    assert services.processor.process(stored.id, now=datetime.now(UTC)) is Status.RETRYING

    [failure] = [message for message in service_messages(caplog) if message.startswith("handler ")]
    assert failure.endswith(f": ValueError: unknown site\\n{FORGED}\\x1b[1A\\x1b[2K\\x1b[31m")
    for message in service_messages(caplog):
        assert_unforgeable(message)
    assert "quoting_handler" in services.inbox.get(stored.id).last_error


def test_an_api_error_holding_a_nul_is_stored_on_every_backend(backend, api, services, sender):
    """An optimization error with a NUL in it (which PostgreSQL cannot store) is stored, and shown, as an escape."""
    document = example_result("route", REQUEST_ID)
    document["error"] = "solver\x00crashed"
    api.add_result("route", REQUEST_ID, document)
    msg_id = new_message_id()
    assert sender.send({"request_id": REQUEST_ID}, path="/webhook/route", msg_id=msg_id).status_code == 200
    stored = services.inbox.by_message_id(msg_id)
    assert services.processor.process(stored.id, now=datetime.now(UTC)) is Status.DONE
    row = services.inbox.get(stored.id)
    assert row.last_error == "optimization failed: solver\\x00crashed"
    assert row.result_summary.endswith(": optimization failed: solver\\x00crashed")
