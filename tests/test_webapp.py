"""The web side (webapp.py): POST /webhook and GET /healthz. A delivery that fails authentication gets a generic
401; only POST, JSON and bodies within MAX_BODY_BYTES are taken (chunked ones too); a redelivery is a 2xx
duplicate; a store that fails is 503, a queue that fails is still 2xx; no answer is ever a redirect.

Every delivery is signed for real with the svix library at the current time. Each test asserts the status,
the inbox rows written (none for anything forged or malformed) and, where a secret is in play, that neither
the webhook secret nor the API key reaches the logs or the response.
"""

import base64
import hashlib
import hmac
import http.client
import json
import logging
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.engine import make_url
from support.answers import assert_policy, check
from support.deliveries import Sender, drain
from support.standin import API_KEY, ROUTE_ID

import defaults
import work_queue
from clock import utcnow
from config import load_settings
from inbox import Status, metadata
from services import Services
from signatures import new_message_id, new_secret, signed_headers
from webapp import create_app

BODY = json.dumps({"request_id": ROUTE_ID}).encode()
# BODY with exactly one byte changed (the request id's last character).
TAMPERED = BODY.replace(ROUTE_ID.encode(), ROUTE_ID[:-1].encode() + b"5")
# The decoys of Svix's published test vectors: a wrong v1 entry, and an entry of an unknown version (v2).
WRONG_V1 = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
DECOYS = f"{WRONG_V1} v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
V1A = "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg=="
NOT_UTF8 = b'{"request_id": "\xff\xfe"}'
GENERIC_401 = {"error": "invalid signature"}

Headers = dict[str, str] | list[tuple[str, str]]
Build = Callable[[str], tuple[bytes, Headers]]


@pytest.fixture(autouse=True)
def _capture_all_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)


# Helpers ----------------------------------------------------------------------------------------


def now_ts(offset: int = 0) -> str:
    return str(int(datetime.now(UTC).timestamp()) + offset)


def raw_signature(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    """A v1 entry computed by hand over `{id}.{timestamp}.{body}`, for values `Webhook.sign` cannot take."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed(secret: str, body: bytes = BODY, **changes: str | None) -> dict[str, str]:
    """Correctly signed headers for `body`, then `changes` applied (svix_id=... sets, None removes)."""
    headers = signed_headers(secret, body)
    for name, value in changes.items():
        key = name.replace("_", "-")
        if value is None:
            headers.pop(key)
        else:
            headers[key] = value
    return headers


def signed_raw(secret: str, body: bytes, timestamp: str | None = None) -> dict[str, str]:
    """Headers signed by hand over any bytes (UTF-8 or not) and any literal timestamp (now by default)."""
    msg_id, timestamp = new_message_id(), timestamp or now_ts()
    signature = raw_signature(secret, msg_id, timestamp, body)
    return {
        "content-type": "application/json",
        "svix-id": msg_id,
        "svix-timestamp": timestamp,
        "svix-signature": signature,
    }


def at_timestamp(timestamp: Callable[[], str]) -> Build:
    """A delivery signed correctly for `timestamp()`, taken when it is sent, so only the timestamp is at fault."""
    return lambda secret: (BODY, signed_raw(secret, BODY, timestamp()))


def padded(size: int) -> bytes:
    """A route payload of exactly `size` bytes."""
    body = json.dumps({"request_id": ROUTE_ID, "pad": ""}).encode()
    return body[:-2] + b"a" * (size - len(body)) + body[-2:]


def with_signature(make: Callable[[str], str]) -> Build:
    """A delivery whose svix-signature is `make(valid signature)`."""

    def build(secret: str) -> tuple[bytes, Headers]:
        headers = signed(secret)
        headers["svix-signature"] = make(headers["svix-signature"])
        return BODY, headers

    return build


def signature_twice(headers: dict[str, str]) -> list[tuple[str, str]]:
    """The same valid svix-signature header sent twice, as a proxy might duplicate it."""
    return [*headers.items(), ("svix-signature", headers["svix-signature"])]


def assert_no_leak(secret: str, *texts: str) -> None:
    for text in texts:
        assert secret not in text
        assert secret.removeprefix("whsec_") not in text
        assert API_KEY not in text


def db_path(url: str) -> str:
    return str(make_url(url).database)


def drop_table(url: str, table: str) -> None:
    """Drop `table` behind the service's back, through a separate sqlite3 connection."""
    with closing(sqlite3.connect(db_path(url))) as conn:
        conn.execute(f"DROP TABLE {table}")
        conn.commit()


# Over a real socket (conftest's `server`), for what the test client cannot show: chunked bodies and
# concurrent requests.


def post(port: int, body: bytes, headers: Headers, *, chunked: bool = False) -> tuple[int, dict[str, str], bytes]:
    """POST over a real socket; with `chunked`, as Transfer-Encoding: chunked with no Content-Length."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest("POST", "/webhook")
        for name, value in headers.items() if isinstance(headers, dict) else headers:
            conn.putheader(name, value)
        if chunked:
            conn.putheader("Transfer-Encoding", "chunked")
            conn.endheaders()
            try:
                for start in range(0, len(body), 16384):
                    part = body[start : start + 16384]
                    conn.send(b"%x\r\n%s\r\n" % (len(part), part))
                conn.send(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server may answer (413) and close before the whole body is sent
        else:
            conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


# Authentication failures are 401, generic, and store nothing ------------------------------------------

FORGED: dict[str, Build] = {
    # Headers missing or empty, and no complete webhook-* set
    "no svix-id": lambda s: (BODY, signed(s, svix_id=None)),
    "no svix-timestamp": lambda s: (BODY, signed(s, svix_timestamp=None)),
    "no svix-signature": lambda s: (BODY, signed(s, svix_signature=None)),
    "empty svix-signature": lambda s: (BODY, signed(s, svix_signature="")),
    "no signature headers at all": lambda s: (BODY, {"content-type": "application/json"}),
    "incomplete webhook-* set": lambda s: (
        BODY,
        {k.replace("svix-", "webhook-"): v for k, v in signed(s).items() if k != "svix-signature"},
    ),
    # Outside the ±5 min window, correctly signed for the timestamp sent
    "timestamp 310 s old": at_timestamp(lambda: now_ts(-310)),
    "timestamp 310 s ahead": at_timestamp(lambda: now_ts(310)),
    "timestamp a day old": at_timestamp(lambda: now_ts(-86400)),
    "timestamp in milliseconds": at_timestamp(lambda: now_ts() + "000"),
    # Timestamps that are not a usable number
    "timestamp not a number": at_timestamp(lambda: "yesterday"),
    "timestamp nan": at_timestamp(lambda: "nan"),
    "timestamp 1e400": at_timestamp(lambda: "1e400"),
    "timestamp inf": at_timestamp(lambda: "inf"),
    "timestamp negative": at_timestamp(lambda: "-1"),
    # Another secret, a tampered byte, re-serialised JSON, a changed id or timestamp
    "another secret": lambda s: (BODY, signed_headers(new_secret(), BODY)),
    "one byte tampered": lambda s: (TAMPERED, signed(s)),
    "JSON re-serialised compactly": lambda s: (
        json.dumps(json.loads(BODY), separators=(",", ":")).encode(),
        signed(s),
    ),
    "JSON keys reordered": lambda s: (
        b'{"type": "route.optimized", "request_id": "%s"}' % ROUTE_ID.encode(),
        signed(s, b'{"request_id": "%s", "type": "route.optimized"}' % ROUTE_ID.encode()),
    ),
    "trailing newline added": lambda s: (BODY + b"\n", signed(s)),
    "svix-id changed after signing": lambda s: (BODY, signed(s, svix_id=new_message_id())),
    "svix-timestamp changed after signing": lambda s: (BODY, signed(s, svix_timestamp=now_ts(-2))),
    "signature of an empty body": lambda s: (BODY, signed(s, b"")),
    # Malformed signature lists are 401, never 500
    "entry without a comma": with_signature(lambda sig: sig.removeprefix("v1,")),
    "entry with three parts": with_signature(lambda sig: sig + ",extra"),
    "bad base64 v1,abc": with_signature(lambda sig: "v1,abc"),
    "double space between entries": with_signature(lambda sig: f"{WRONG_V1}  {sig}"),
    "comma-joined duplicate header": with_signature(lambda sig: f"{sig}, {sig}"),
    "comma-joined without space": with_signature(lambda sig: f"{sig},{sig}"),
    "header sent twice": lambda s: (BODY, signature_twice(signed(s))),
    # Only v1a or unknown versions, even when they carry the right HMAC: no downgrade
    "only a v1a entry": with_signature(lambda sig: V1A),
    "right HMAC labelled v2": with_signature(lambda sig: sig.replace("v1,", "v2,", 1)),
    "right HMAC labelled v1a": with_signature(lambda sig: sig.replace("v1,", "v1a,", 1)),
    "only the decoys": with_signature(lambda sig: DECOYS),
    # A body that is not UTF-8, correctly signed over its bytes
    "body not UTF-8": lambda s: (NOT_UTF8, signed_raw(s, NOT_UTF8)),
}


@pytest.mark.parametrize("build", FORGED.values(), ids=FORGED.keys())
def test_forged_delivery_is_401_and_stores_nothing(build, client, services, secret, caplog):
    """A delivery that fails authentication gets a generic 401, writes no row, queues nothing, leaks nothing."""
    body, headers = build(secret)
    response = client.post("/webhook", data=body, headers=headers)
    check(response)
    assert response.status_code == 401
    assert response.get_json() == GENERIC_401
    assert services.inbox.count() == 0
    assert services.queue.pending() == 0
    assert_no_leak(secret, caplog.text, response.get_data(as_text=True))
    signatures = [v for k, v in (headers.items() if isinstance(headers, dict) else headers) if "signature" in k]
    assert not any(len(value) > 20 and value in caplog.text for value in signatures)


def test_stale_rejection_heals_when_svix_retries_with_a_fresh_signature(client, services, secret):
    """A delivery refused for its timestamp is accepted when Svix retries it, same id, signed afresh."""
    msg_id = new_message_id()
    stale = signed_headers(secret, BODY, msg_id, now=datetime.now(UTC) - timedelta(minutes=10))
    assert client.post("/webhook", data=BODY, headers=stale).status_code == 401
    response = client.post("/webhook", data=BODY, headers=signed_headers(secret, BODY, msg_id))
    assert response.status_code == 200
    assert services.inbox.by_message_id(msg_id).status is Status.RECEIVED


# What authenticates ----------------------------------------------------------------------------------

ACCEPTED: dict[str, Build] = {
    "svix-* headers": lambda s: (BODY, signed(s)),
    "unbranded webhook-* headers": lambda s: (BODY, signed_headers(s, BODY, prefix="webhook")),
    # The hand-made signatures used for the forged cases above are right when nothing else is wrong.
    "signature computed by hand": lambda s: (BODY, signed_raw(s, BODY)),
    "timestamp by hand, now": at_timestamp(now_ts),
    "valid entry after the decoys": with_signature(lambda sig: f"{DECOYS} {sig}"),
    "valid entry before the decoys": with_signature(lambda sig: f"{sig} {DECOYS}"),
    "valid entry after a v1a entry": with_signature(lambda sig: f"{V1A} {sig}"),
    "timestamp 290 s old": lambda s: (
        BODY,
        signed_headers(s, BODY, now=datetime.now(UTC) - timedelta(seconds=290)),
    ),
    "timestamp 290 s ahead": lambda s: (
        BODY,
        signed_headers(s, BODY, now=datetime.now(UTC) + timedelta(seconds=290)),
    ),
    "svix-id of 255 characters": lambda s: (BODY, signed_headers(s, BODY, "m" * 255)),
    "content type with charset": lambda s: (BODY, {**signed(s), "content-type": "application/json; charset=utf-8"}),
    "1 MiB body, Svix's largest": lambda s: (padded(1024 * 1024), signed(s, padded(1024 * 1024))),
}


@pytest.mark.parametrize("build", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_authentic_delivery_is_stored_then_acknowledged(build, client, services, secret, caplog):
    """An authentic delivery is committed as `received`, queued once and answered 200, leaking nothing."""
    body, headers = build(secret)
    response = client.post("/webhook", data=body, headers=headers)
    check(response)
    assert response.status_code == 200
    assert response.get_json() == {"status": "received"}
    [event] = services.inbox.latest()
    assert (event.status, event.request_id, event.body) == (Status.RECEIVED, ROUTE_ID, body)
    assert services.queue.pending() == 1
    assert_no_leak(secret, caplog.text, response.get_data(as_text=True))


# Rotating the secret: a match against any configured secret -------------------------------------------


@pytest.mark.parametrize(
    ("configured", "signer", "expected"),
    [
        ("old new", "old", 200),
        ("old new", "new", 200),
        ("old,new", "old", 200),
        ("old, new", "new", 200),
        ("old new", "other", 401),
        ("new", "old", 401),
    ],
)
def test_rotation_accepts_any_configured_secret(configured, signer, expected, environ):
    """During a rotation either secret verifies; a secret not (or no longer) configured gets 401."""
    secrets = {"old": new_secret(), "new": new_secret(), "other": new_secret()}
    for name, value in secrets.items():
        configured = configured.replace(name, value)
    built = Services.build(load_settings({**environ, "WEBHOOK_SECRET": configured}, env_file=None))
    try:
        client = create_app(services=built).test_client()
        response = client.post("/webhook", data=BODY, headers=signed(secrets[signer]))
        check(response)
        assert response.status_code == expected
        assert built.inbox.count() == (1 if expected == 200 else 0)
    finally:
        built.close()


# Methods: POST only -----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH", "OPTIONS"])
@pytest.mark.parametrize("path", ["/webhook", "/webhook/route"])
def test_other_methods_are_405_and_store_nothing(method, path, client, services, secret):
    """Only POST is accepted on the webhook paths, even for a correctly signed request."""
    response = client.open(path, method=method, data=BODY, headers=signed(secret))
    check(response)
    assert response.status_code == 405
    assert "POST" in response.headers["Allow"]
    assert services.inbox.count() == 0


# The size cap (MAX_BODY_BYTES), with Content-Length and chunked ---------------------------------------


@pytest.mark.parametrize("content_type", ["application/json", "text/plain"])
def test_body_over_the_cap_with_content_length_is_413(content_type, client, services, secret):
    """A correctly signed body one byte over MAX_BODY_BYTES is 413 (checked before the content type), not stored."""
    body = padded(services.settings.max_body_bytes + 1)
    response = client.post("/webhook", data=body, headers=signed(secret, body, content_type=content_type))
    check(response)
    assert response.status_code == 413
    assert services.inbox.count() == 0


def _oversized(services: Services) -> bytes:
    return padded(services.settings.max_body_bytes + 1024)


def test_oversized_chunked_body_is_refused_and_not_stored(server, services, secret):
    """A chunked body over the cap, correctly signed over all its bytes, is refused and writes no row."""
    body = _oversized(services)
    status, headers, reply = post(server, body, signed(secret, body), chunked=True)
    assert_policy(status, headers, reply)
    assert status >= 400
    assert services.inbox.count() == 0


def test_oversized_chunked_body_is_413(server, services, secret):
    """A chunked body over MAX_BODY_BYTES (no Content-Length) gets 413, like one with Content-Length."""
    body = _oversized(services)
    status, _headers, _reply = post(server, body, signed(secret, body), chunked=True)
    assert status == 413


def test_small_chunked_body_is_read_fully_and_accepted(server, services, secret):
    """A correctly signed chunked body is read to its end, verified and stored whole."""
    body = padded(40000)
    status, headers, reply = post(server, body, signed(secret, body), chunked=True)
    assert_policy(status, headers, reply)
    assert status == 200
    [event] = services.inbox.latest()
    assert event.body == body


def test_chunked_body_is_never_verified_as_empty(server, services, secret):
    """A chunked body sent with a signature over the empty body is 401: the body was not taken as empty."""
    status, headers, reply = post(server, BODY, signed(secret, b""), chunked=True)
    assert_policy(status, headers, reply)
    assert status == 401
    assert services.inbox.count() == 0


def test_duplicate_headers_over_a_real_socket_are_401(server, services, secret):
    """Two svix-signature headers, joined by the server, are a malformed list: 401, never 500."""
    status, reply_headers, reply = post(server, BODY, signature_twice(signed(secret)))
    assert_policy(status, reply_headers, reply)
    assert status == 401
    assert services.inbox.count() == 0


# Content type: JSON only ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml", None],
)
def test_non_json_content_type_is_415(content_type, client, services, secret):
    """A correctly signed delivery whose Content-Type is not JSON (or missing) gets 415 and is not stored."""
    headers = signed(secret, content_type=content_type)
    response = client.post("/webhook", data=BODY, headers=headers)
    check(response)
    assert response.status_code == 415
    assert services.inbox.count() == 0


# Redeliveries and concurrent copies: one row, one task, one fetch -------------------------------------


def test_redelivery_is_acknowledged_without_a_second_row_or_task(sender, services, api):
    """Svix retries (re-signed, same svix-id) are 2xx duplicates: one row, one task, one fetch."""
    msg_id = new_message_id()
    first = sender.send(BODY, msg_id=msg_id)
    second = sender.send(BODY, msg_id=msg_id)
    assert (first.status_code, first.get_json()) == (200, {"status": "received"})
    assert (second.status_code, second.get_json()) == (200, {"status": "redelivered"})
    assert services.inbox.count() == 1
    assert services.queue.pending() == 1
    assert drain(services) == 1
    late = sender.send(BODY, msg_id=msg_id)
    assert (late.status_code, late.get_json()) == (200, {"status": "redelivered"})
    assert services.queue.pending() == 0
    assert services.inbox.by_message_id(msg_id).status is Status.DONE
    assert api.fetches[("route", ROUTE_ID)] == 1


def test_identical_concurrent_deliveries_make_one_row_and_one_task(server, services, secret):
    """Eight identical deliveries at once over real sockets: all 2xx, exactly one row and one queued task."""
    headers = signed(secret)
    barrier = threading.Barrier(8)

    def deliver(_: int) -> tuple[int, bytes]:
        barrier.wait(timeout=5)
        status, _headers, reply = post(server, BODY, headers)
        return status, reply

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(deliver, range(8)))
    assert [status for status, _ in results] == [200] * 8
    assert sorted(json.loads(reply)["status"] for _, reply in results) == ["received"] + ["redelivered"] * 7
    assert services.inbox.count() == 1
    assert services.queue.pending() == 1


def test_same_message_twice_is_one_row_processed_once(api, services, sender):
    """The same svix-id delivered twice makes one row, one task and one fetch."""
    msg_id = new_message_id()
    first = sender.send({"request_id": ROUTE_ID}, path="/webhook/route", msg_id=msg_id)
    again = sender.send({"request_id": ROUTE_ID}, path="/webhook/route", msg_id=msg_id)
    assert (first.status_code, first.get_json()) == (200, {"status": "received"})
    assert (again.status_code, again.get_json()) == (200, {"status": "redelivered"})
    assert services.inbox.count() == 1
    assert drain(services) == 1
    assert services.inbox.by_message_id(msg_id).status is Status.DONE
    assert api.fetches[("route", ROUTE_ID)] == 1


def test_concurrent_deliveries_of_one_message_are_one_row(api, services, app, secret):
    """The same svix-id delivered from several threads at once makes one row and one fetch."""
    msg_id = new_message_id()
    threads = 6
    barrier = threading.Barrier(threads)
    answers = []

    def send() -> None:
        client_sender = Sender(app.test_client(), secret)
        barrier.wait()
        response = client_sender.send({"request_id": ROUTE_ID}, path="/webhook/route", msg_id=msg_id)
        answers.append((response.status_code, response.get_json()["status"]))

    workers = [threading.Thread(target=send) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=10)
    assert sorted(answers) == [(200, "received")] + [(200, "redelivered")] * (threads - 1)
    assert services.inbox.count() == 1
    assert drain(services) == 1
    assert services.inbox.by_message_id(msg_id).status is Status.DONE
    assert api.fetches[("route", ROUTE_ID)] == 1


# Storage failures: the inbox down is 503, the queue down still 2xx ------------------------------------


def test_inbox_down_is_503_with_retry_after_and_nothing_half_written(sender, services, settings, caplog):
    """When the inbox cannot store, the answer is 503 + Retry-After, nothing is queued, and Svix's retry lands."""
    drop_table(settings.database_url, "inbox_events")
    msg_id = new_message_id()
    response = sender.send(BODY, msg_id=msg_id)
    check(response)
    assert response.status_code == 503
    assert int(response.headers["Retry-After"]) > 0
    assert services.queue.pending() == 0
    assert_no_leak(sender.secret, caplog.text, response.get_data(as_text=True))

    metadata.create_all(services.inbox.engine)
    assert services.inbox.count() == 0
    assert sender.send(BODY, msg_id=msg_id).status_code == 200
    assert services.inbox.count() == 1


def test_queue_down_after_commit_is_2xx_and_the_reconciler_enqueues_later(sender, services, settings, api):
    """A broken queue after the commit still gets 2xx; the row stays `received` and the reconciler queues it."""
    drop_table(settings.queue_url, "task")
    msg_id = new_message_id()
    response = sender.send(BODY, msg_id=msg_id)
    check(response)
    assert response.status_code == 200
    assert services.inbox.by_message_id(msg_id).status is Status.RECEIVED

    work_queue.create_huey(settings.queue_url).storage.close()  # recreates the queue's tables
    assert services.queue.pending() == 0
    later = utcnow() + timedelta(seconds=defaults.RECONCILE_AFTER_SECONDS + 1)
    assert services.processor.reconcile(now=later) == 1
    assert services.queue.pending() == 1
    assert drain(services) == 1
    assert services.inbox.by_message_id(msg_id).status is Status.DONE


# Never a redirect (Svix counts a 3xx as a failure), never 410 -----------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/webhook/", 200),
        ("/webhook/cluster.optimized", 200),
        ("/webhook/nonsense", 404),
        ("/webhook/route/extra", 404),
        ("/webhooks", 404),
        ("//webhook", 404),
    ],
)
def test_webhook_paths_never_redirect(path, expected, sender, services):
    """Odd webhook paths are accepted or 404, never a 3xx (which Svix counts as a failure) and never 410."""
    response = sender.send(BODY, path=path)
    check(response)
    assert response.status_code == expected
    assert services.inbox.count() == (1 if expected == 200 else 0)


@pytest.mark.parametrize("path", ["/webhook//", "/webhook//route"])
def test_doubled_slashes_never_redirect(path, sender):
    """A doubled slash in the webhook path is answered (2xx or 404), never redirected."""
    response = sender.send(BODY, path=path)
    assert not 300 <= response.status_code < 400


@pytest.mark.parametrize(("path", "kind"), [("/webhook/route/", "route"), ("/webhook/cluster.optimized/", "cluster")])
def test_typed_path_with_trailing_slash_is_accepted(path, kind, sender, services):
    """A typed endpoint URL configured with a trailing slash is accepted like /webhook/ is."""
    response = sender.send(BODY, path=path)
    assert response.status_code == 200
    assert services.inbox.latest()[0].path_type == f"{kind}.optimized"


# GET /healthz -------------------------------------------------------------------------------------


def test_healthz_is_ok_while_the_inbox_works(client):
    """GET /healthz answers 200 {"status": "ok"} when the inbox table answers."""
    response = client.get("/healthz")
    assert (response.status_code, response.get_json()) == (200, {"status": "ok"})


def test_healthz_is_503_when_the_inbox_table_is_gone(client, settings, caplog):
    """GET /healthz answers 503 once the inbox table is gone, without leaking a secret."""
    drop_table(settings.database_url, "inbox_events")
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["status"] != "ok"
    assert_no_leak(settings.webhook_secrets[0], caplog.text, response.get_data(as_text=True))


def test_healthz_only_answers_get(client):
    """POST /healthz is 405, as short JSON."""
    response = client.post("/healthz")
    check(response)
    assert response.status_code == 405
