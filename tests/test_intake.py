"""Intake (intake.py): what an authentic delivery is stored as. Signed deliveries whose payload is unusable
are kept as `invalid` (400 with abort-message), those of another type as `ignored` (2xx, never queued); the
svix-id, the only key, must be usable; body and signature headers are stored exactly as they came.

Every delivery is signed for real with the svix library at the current time, and goes through the app."""

import json
import logging

import pytest
from support.answers import check
from support.standin import ROUTE_ID

from inbox import Status
from signatures import new_message_id, signed_headers

BODY = json.dumps({"request_id": ROUTE_ID}).encode()


@pytest.fixture(autouse=True)
def _capture_all_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)


# Stored as it came -------------------------------------------------------------------------------------


def test_raw_body_and_signature_headers_are_stored_byte_for_byte(client, services, secret):
    """The stored body and svix-* headers are exactly what was signed and sent, not a re-encoding."""
    body = b'{ "z": 1,\n  "request_id":"%s", "note": "caf\xc3\xa9 \\u00e9" }\r\n' % ROUTE_ID.encode()
    headers = {**signed_headers(secret, body), "user-agent": "Svix-Webhooks/1.17.0"}
    assert client.post("/webhook", data=body, headers=headers).status_code == 200
    [event] = services.inbox.latest()
    assert event.body == body
    for name in ("svix-id", "svix-timestamp", "svix-signature"):
        assert event.headers[name] == headers[name]


# Authentic but unusable: stored `invalid`, answered 400 with abort-message -----------------------------


INVALID_BODIES = {
    "not JSON": b"request_id=" + ROUTE_ID.encode(),
    "truncated JSON": BODY[:-2],
    "JSON array": b'["%s"]' % ROUTE_ID.encode(),
    "JSON string": b'"%s"' % ROUTE_ID.encode(),
    "JSON number": b"42",
    "JSON null": b"null",
    "empty object": b"{}",
    "request_id null": b'{"request_id": null}',
    "request_id a number": b'{"request_id": 67}',
    "request_id empty": b'{"request_id": ""}',
    "request_id with a path": b'{"request_id": "../../admin"}',
    "request_id with a query": b'{"request_id": "abc?x=1"}',
    "request_id too long": b'{"request_id": "%s"}' % (b"a" * 65),
    "typed, without request_id": b'{"type": "route.optimized"}',
    "request_id ending in a newline": b'{"request_id": "%s\\n"}' % ROUTE_ID.encode(),
    "nested deeper than the parser goes": b"[" * 100_000 + b"]" * 100_000,
    "request_id beside a deep nest": b'{"request_id": "%s", "x": ' % ROUTE_ID.encode()
    + b"[" * 100_000
    + b"]" * 100_000
    + b"}",
}


@pytest.mark.parametrize("body", INVALID_BODIES.values(), ids=INVALID_BODIES.keys())
def test_signed_unusable_payload_is_stored_invalid_and_aborted(body, client, services, secret):
    """An authentic unusable payload is kept as `invalid`, answered 400 + abort-message, also on redelivery."""
    msg_id = new_message_id()
    for _attempt in range(2):
        response = client.post("/webhook", data=body, headers=signed_headers(secret, body, msg_id))
        check(response)
        assert response.status_code == 400
        assert response.headers["webhook-delivery"] == "abort-message"
    assert services.inbox.count() == 1
    event = services.inbox.by_message_id(msg_id)
    assert (event.status, event.body) == (Status.INVALID, body)
    assert services.queue.pending() == 0


def test_invalid_payload_on_a_typed_path_is_invalid(sender, services):
    """A payload with no request_id is invalid even when the URL path names its type."""
    response = sender.send({"data": {}}, path="/webhook/cluster")
    assert response.status_code == 400
    assert services.inbox.latest()[0].status is Status.INVALID


# Another product's or an unknown event type: stored `ignored`, answered 2xx, never queued --------------


IGNORED = {
    "Svix test vector C's ping": {"event_type": "ping", "data": {"success": True}},
    "another product's type": {"type": "invoice.paid", "request_id": ROUTE_ID},
    "eventType field": {"eventType": "route.created", "request_id": ROUTE_ID},
    "near miss": {"type": "route.optimised", "request_id": ROUTE_ID},
}


@pytest.mark.parametrize("payload", IGNORED.values(), ids=IGNORED.keys())
@pytest.mark.parametrize("path", ["/webhook", "/webhook/route"])
def test_signed_delivery_of_another_type_is_ignored(payload, path, sender, services):
    """A signed delivery whose payload type is not an OptiPick type is 2xx, stored `ignored`, never queued."""
    response = sender.send(payload, path=path)
    check(response)
    assert response.status_code == 200
    assert response.get_json() == {"status": "ignored"}
    [event] = services.inbox.latest()
    assert event.status is Status.IGNORED
    assert services.queue.pending() == 0


# The svix-id is the inbox's key: one that is not a usable key is refused -------------------------------


BAD_IDS = {
    "256 characters": "m" * 256,
    "dot": "msg_1.2",
    "slash": "msg_a/../b",
    "space": "msg a",
    "quote and semicolon": "msg_';DROP",
    "percent": "msg_%00",
    "non-ASCII": "msg_é",
}


@pytest.mark.parametrize("msg_id", BAD_IDS.values(), ids=BAD_IDS.keys())
def test_signed_delivery_with_unusable_id_is_400_and_not_stored(msg_id, client, services, secret):
    """A correctly signed delivery whose svix-id is not ^[A-Za-z0-9_-]{1,255}$ gets 400 + abort, no row."""
    response = client.post("/webhook", data=BODY, headers=signed_headers(secret, BODY, msg_id))
    check(response)
    assert response.status_code == 400
    assert response.headers["webhook-delivery"] == "abort-message"
    assert services.inbox.count() == 0


# What is stored is what was signed, and safe to store and log ------------------------------------------


def test_unknown_type_with_control_characters_is_stored_printable(sender, services):
    """A type holding a NUL or a newline is stored with them replaced: no NUL for PostgreSQL, no forged log lines."""
    response = sender.send({"type": "route.optimized.\u0000w.u1\nx", "request_id": ROUTE_ID})
    assert response.status_code == 200
    [event] = services.inbox.latest()
    assert event.status is Status.IGNORED
    assert event.event_type == "route.optimized.\\x00w.u1\\nx"


def test_empty_svix_id_beside_a_webhook_id_is_refused(client, services, secret):
    """An empty svix-id wins over webhook-id, as in the svix library: refused, never stored under an unsigned id."""
    body = json.dumps({"request_id": ROUTE_ID})
    headers = signed_headers(secret, body, msg_id="msg_covered", prefix="webhook")
    headers["svix-id"] = ""
    response = client.post("/webhook", data=body, headers=headers)
    assert response.status_code == 401
    assert services.inbox.count() == 0
