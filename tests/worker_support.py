"""Helpers for the worker-side tests: services built from adjusted settings, and deliveries that return their row."""

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from conftest import Sender

from config import load_settings
from inbox import Inbox, StoredEvent
from services import Services
from signatures import new_message_id
from webapp import create_app


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
    stored = inbox.by_msg_id(msg_id)
    assert stored is not None
    return stored
