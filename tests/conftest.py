"""Shared fixtures: the real app on temporary SQLite files, a real local stand-in for the OptiPick API,
and deliveries signed for real with the svix library.

A test that requests the `backend` fixture runs three times: on SQLite files (`sqlite`), and on a
PostgreSQL inbox with a Redis queue (`postgres+redis`) or a PostgreSQL queue (`postgres+pghuey`),
against the servers named by TEST_DATABASE_URL and TEST_REDIS_URL. Without those variables the
PostgreSQL/Redis runs are skipped, or fail when CI=true (CI must run them). Each PostgreSQL run gets a
schema of its own (the inbox's and Huey's tables both), dropped afterwards; each Redis run flushes its
database index first. Tests that do not request `backend` run on SQLite as before.
"""

import json
import os
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool
from werkzeug.test import TestResponse

PROJECT_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_DIR))

from config import Settings, load_settings  # noqa: E402
from inbox import Inbox  # noqa: E402
from optipick_standin import StandInApi  # noqa: E402
from services import Services  # noqa: E402
from signatures import new_secret, signed_headers  # noqa: E402
from webapp import create_app  # noqa: E402

API_KEY = "test-api-key-" + "k" * 20
ROUTE_ID = "67d3f1a95e593173d0a1b2c4"
CLUSTER_ID = "67d3f2af5e593173d0a1b2d9"


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


# Backends ---------------------------------------------------------------------------------------

BACKENDS = ("sqlite", "postgres+redis", "postgres+pghuey")
TEST_DATABASE_URL = "TEST_DATABASE_URL"  # e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test
TEST_REDIS_URL = "TEST_REDIS_URL"  # e.g. redis://127.0.0.1:6379/15 (flushed by every test that uses it)
SERVER_TIMEOUT_SECONDS = 3


@dataclass(frozen=True)
class Backend:
    """Where one test's inbox (DATABASE_URL) and queue (QUEUE_URL) live."""

    name: str
    database_url: str
    queue_url: str

    @property
    def postgres(self) -> bool:
        return self.name.startswith("postgres")


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


_server_problems: dict[str, str | None] = {}  # variable -> why its server cannot be used (None: it can)


def _check_postgres(url: str) -> None:
    engine = create_engine(url, poolclass=NullPool, connect_args={"connect_timeout": SERVER_TIMEOUT_SECONDS})
    try:
        with engine.connect() as conn:
            conn.execute(text("select 1"))
    finally:
        engine.dispose()


def _check_redis(url: str) -> None:
    client = redis.Redis.from_url(url, socket_timeout=SERVER_TIMEOUT_SECONDS)
    try:
        client.ping()
    finally:
        client.close()


def server_url(variable: str) -> str:
    """The URL of a test server from `variable`: skips the test when it is not set (fails under CI=true),
    and fails it when the server does not answer."""
    url = os.environ.get(variable, "").strip()
    if not url:
        reason = f"{variable} is not set: the PostgreSQL/Redis variants need a server (see README, Scaling out)"
        if _in_ci():
            pytest.fail(f"{reason}; CI must run them", pytrace=False)
        pytest.skip(reason)
    if variable not in _server_problems:  # ask each server once per session
        check = _check_postgres if variable == TEST_DATABASE_URL else _check_redis
        try:
            check(url)
            _server_problems[variable] = None
        except Exception as exc:
            first_line = (str(exc).strip().splitlines() or [""])[0]
            _server_problems[variable] = f"{type(exc).__name__}: {first_line}"
    problem = _server_problems[variable]
    if problem is not None:
        pytest.fail(f"{variable} is set but its server does not answer ({problem})", pytrace=False)
    return url


def postgres_base_url() -> str:
    """TEST_DATABASE_URL with psycopg as its driver."""
    return (
        make_url(server_url(TEST_DATABASE_URL))
        .set(drivername="postgresql+psycopg")
        .render_as_string(hide_password=False)
    )


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[Any]:
    """An engine on TEST_DATABASE_URL for creating and dropping the tests' schemas."""
    engine = create_engine(postgres_base_url(), poolclass=NullPool)
    yield engine
    engine.dispose()


def schema_url(base_url: str, schema: str) -> str:
    """`base_url` with `schema` first on its search_path, for the inbox and for Huey alike."""
    url = make_url(base_url)
    options = url.query.get("options", "")
    options = options if isinstance(options, str) else " ".join(options)
    return url.update_query_dict({"options": f"{options} -csearch_path={schema}".strip()}).render_as_string(
        hide_password=False
    )


@pytest.fixture
def postgres_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema of this test's own, dropped afterwards."""
    base = postgres_base_url()
    admin = request.getfixturevalue("postgres_admin")
    schema = "test_" + uuid.uuid4().hex[:16]
    with admin.begin() as conn:
        conn.execute(text(f'create schema "{schema}"'))
    yield schema_url(base, schema)
    with admin.begin() as conn:
        # Bounded: a connection a test left in a transaction must fail the drop, not hang the run.
        conn.execute(text("set local lock_timeout = '10s'"))
        conn.execute(text(f'drop schema "{schema}" cascade'))


@pytest.fixture
def redis_url() -> str:
    """TEST_REDIS_URL, its database index emptied first."""
    url = server_url(TEST_REDIS_URL)
    client = redis.Redis.from_url(url, socket_timeout=SERVER_TIMEOUT_SECONDS)
    try:
        client.flushdb()
    finally:
        client.close()
    return url


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """The inbox and queue of one run: SQLite files, PostgreSQL + Redis, or PostgreSQL for both."""
    name = request.param
    if name == "sqlite":
        return Backend(name, f"sqlite:///{tmp_path / 'inbox.db'}", f"sqlite:///{tmp_path / 'queue.db'}")
    database_url = request.getfixturevalue("postgres_url")
    queue_url = request.getfixturevalue("redis_url") if name == "postgres+redis" else database_url
    return Backend(name, database_url, queue_url)


@pytest.fixture
def environ(request: pytest.FixtureRequest, tmp_path: Path, secret: str, api: StandInApi) -> dict[str, str]:
    """The environment of a receiver using temporary SQLite files (or the test's `backend`, when it asks
    for one) and the stand-in API."""
    database_url = f"sqlite:///{tmp_path / 'inbox.db'}"
    queue_url = f"sqlite:///{tmp_path / 'queue.db'}"
    if "backend" in request.fixturenames:
        chosen: Backend = request.getfixturevalue("backend")
        database_url, queue_url = chosen.database_url, chosen.queue_url
    return {
        "WEBHOOK_SECRET": secret,
        "OPTIPICK_API_KEY": API_KEY,
        "OPTIPICK_API_URL": api.url,
        "DATABASE_URL": database_url,
        "QUEUE_URL": queue_url,
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
    # pending_count first: Redis and PostgreSQL dequeues block for a second when the queue is empty.
    while ran < limit and huey.pending_count() and (task := huey.dequeue()) is not None:
        huey.execute(task)
        ran += 1
    return ran


# For the tests that run the receiver as real processes (tests/processes.py has the helpers).


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., Any]]:
    """Start `python <args>` in the project directory; every process started is gone after the test."""
    from processes import Process  # imported here: processes.py imports this module

    started: list[Process] = []

    def start(args: list[str], env: dict[str, str]) -> Process:
        process = Process(args, env, tmp_path / f"process-{len(started) + 1}.log")
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


@pytest.fixture
def inbox(environ: dict[str, str]) -> Iterator[Inbox]:
    """The receiver's inbox, read from the test as another process would."""
    opened = Inbox.open(environ["DATABASE_URL"])
    yield opened
    opened.close()


@pytest.fixture
def port() -> int:
    from processes import free_port

    return free_port()


@pytest.fixture
def base_url(port: int) -> str:
    return f"http://127.0.0.1:{port}"
