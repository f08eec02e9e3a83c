"""Signed deliveries, as Svix sends them: to the app in-process (Sender, deliver) or to a running receiver
over HTTP (post_delivery); services built from adjusted settings; and running the queue in this thread."""

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import requests
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from config import load_settings
from inbox import Inbox, StoredEvent
from services import Services
from signatures import new_message_id, signed_headers
from support.standin import ROUTE_ID
from webapp import create_app


class Sender:
    """Sends signed deliveries to the app, as Svix would."""

    def __init__(self, client: FlaskClient, secret: str) -> None:
        self.client = client
        self.secret = secret

    def send(
        self,
        payload: Mapping[str, Any] | bytes | str,
        path: str = "/webhook",
        msg_id: str | None = None,
        **header_overrides: str,
    ) -> TestResponse:
        body = payload if isinstance(payload, bytes | str) else json.dumps(payload)
        headers = signed_headers(self.secret, body, msg_id)
        headers.update({k.replace("_", "-"): v for k, v in header_overrides.items()})
        return self.client.post(path, data=body, headers=headers)


def drain(services: Services, limit: int = 100) -> int:
    """Run every task waiting in the real queue, in this thread; return how many ran."""
    huey = services.queue.huey
    ran = 0
    # pending_count first: Redis and PostgreSQL dequeues block for a second when the queue is empty.
    while ran < limit and huey.pending_count() and (task := huey.dequeue()) is not None:
        huey.execute(task)
        ran += 1
    return ran


@contextmanager
def services_with(environ: Mapping[str, str], **overrides: str | None) -> Iterator[tuple[Services, Sender]]:
    """Services (and a Sender to their own app) built from `environ` with `overrides`; None removes a variable."""
    values = {**environ, **overrides}
    settings = load_settings({k: v for k, v in values.items() if v is not None}, env_file=None)
    built = Services.build(settings)
    try:
        yield built, Sender(create_app(services=built).test_client(), environ["WEBHOOK_SECRET"])
    finally:
        built.close()


def deliver(
    sender: Sender, inbox: Inbox, payload: Mapping[str, Any], path: str = "/webhook", msg_id: str | None = None
) -> StoredEvent:
    """Send a signed delivery, check it was acknowledged, and return its inbox row."""
    msg_id = msg_id or new_message_id()
    response = sender.send(payload, path=path, msg_id=msg_id)
    assert response.status_code == 200, response.get_json()
    stored = inbox.by_message_id(msg_id)
    assert stored is not None
    return stored


def post_delivery(
    base_url: str, secret: str, payload: Mapping[str, Any], path: str = "/webhook", msg_id: str | None = None
) -> tuple[str, int]:
    """POST a delivery signed for real to a running receiver, as Svix would; its message id and HTTP status."""
    body = json.dumps(payload)
    msg_id = msg_id or new_message_id()
    response = requests.post(base_url + path, data=body, headers=signed_headers(secret, body, msg_id), timeout=10)
    return msg_id, response.status_code


def route_event(services: Services, sender: Sender, request_id: str = ROUTE_ID, **payload: Any) -> StoredEvent:
    """Deliver a route result's webhook (POST /webhook/route) and return its inbox row."""
    return deliver(sender, services.inbox, {"request_id": request_id, **payload}, path="/webhook/route")


def send_invalid(sender: Sender, services: Services) -> StoredEvent:
    """An authentic delivery without a request id: stored as invalid, answered 400."""
    msg_id = new_message_id()
    assert sender.send({"type": "route.optimized"}, msg_id=msg_id).status_code == 400
    return services.inbox.by_message_id(msg_id)


def send_ignored(sender: Sender, services: Services) -> StoredEvent:
    """An authentic delivery of another product's event type: stored as ignored, answered 2xx."""
    return deliver(sender, services.inbox, {"type": "message.attempt.exhausted", "request_id": ROUTE_ID})
