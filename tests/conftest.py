"""Shared fixtures: the real app on temporary SQLite files, a real local stand-in for the OptiPick API,
and deliveries signed for real with the svix library."""

import base64
import json
import secrets
import sys
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from svix.webhooks import Webhook
from werkzeug.test import TestResponse

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from config import Settings, load_settings  # noqa: E402
from optipick_standin import StandInApi  # noqa: E402
from services import Services  # noqa: E402
from webapp import create_app  # noqa: E402

API_KEY = "test-api-key-" + "k" * 20
ROUTE_ID = "67d3f1a95e593173d0a1b2c4"
CLUSTER_ID = "67d3f2af5e593173d0a1b2d9"


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def new_msg_id() -> str:
    return "msg_" + uuid.uuid4().hex


def signed_headers(
    secret: str,
    body: bytes | str,
    msg_id: str | None = None,
    timestamp: datetime | None = None,
    prefix: str = "svix",
) -> dict[str, str]:
    """The headers Svix would send with `body`, signed with `secret` at `timestamp` (now by default)."""
    msg_id = msg_id or new_msg_id()
    timestamp = timestamp or datetime.now(UTC)
    text = body.decode() if isinstance(body, bytes) else body
    return {
        "content-type": "application/json",
        f"{prefix}-id": msg_id,
        f"{prefix}-timestamp": str(int(timestamp.timestamp())),
        f"{prefix}-signature": Webhook(secret).sign(msg_id, timestamp, text),
    }


@pytest.fixture
def secret() -> str:
    return new_secret()


@pytest.fixture
def api() -> Iterator[StandInApi]:
    """The stand-in OptiPick API on a free loopback port, with one route and one cluster result."""
    standin = StandInApi(API_KEY)
    standin.add_result("route", ROUTE_ID)
    standin.add_result("cluster", CLUSTER_ID)
    with standin.serve():
        yield standin


@pytest.fixture
def environ(tmp_path: Path, secret: str, api: StandInApi) -> dict[str, str]:
    """The environment of a receiver using temporary SQLite files and the stand-in API."""
    return {
        "WEBHOOK_SECRET": secret,
        "OPTIPICK_API_KEY": API_KEY,
        "OPTIPICK_API_URL": api.url,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'inbox.db'}",
        "QUEUE_URL": f"sqlite:///{tmp_path / 'queue.db'}",
        "RESULTS_DIR": str(tmp_path / "results"),
    }


@pytest.fixture
def settings(environ: dict[str, str]) -> Settings:
    return load_settings(environ, env_file=None)


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    built = Services.build(settings)
    yield built
    built.close()


@pytest.fixture
def app(services: Services) -> Flask:
    return create_app(services=services)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


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


@pytest.fixture
def sender(client: FlaskClient, secret: str) -> Sender:
    return Sender(client, secret)


def drain(services: Services, limit: int = 100) -> int:
    """Run every task waiting in the real queue, in this thread; return how many ran."""
    huey = services.queue.huey
    ran = 0
    while ran < limit and (task := huey.dequeue()) is not None:
        huey.execute(task)
        ran += 1
    return ran
