"""Helpers for the worker-side tests: services built from adjusted settings, and deliveries that return their row."""

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from conftest import Sender, new_msg_id
from sqlalchemy import select

from config import load_settings
from inbox import Inbox, StoredEvent, events
from services import Services
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
    msg_id = msg_id or new_msg_id()
    response = sender.send(payload, path=path, msg_id=msg_id)
    assert response.status_code == 200, response.get_json()
    stored = inbox.by_message_id(msg_id)
    assert stored is not None
    return stored


def holder_of(inbox: Inbox, kind: str, request_id: str) -> str | None:
    """The message id of the event that holds an optimization (its optimization_key), if any."""
    with inbox.engine.connect() as conn:
        return conn.scalar(select(events.c.msg_id).where(events.c.optimization_key == f"{kind}:{request_id}"))
