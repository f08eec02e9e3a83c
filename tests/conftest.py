"""The fixtures: the real app on temporary SQLite files, a real local stand-in for the OptiPick API,
deliveries signed for real with the svix library, the backends to run on, and real processes.

A test that requests the `backend` fixture runs three times: on SQLite files (`sqlite`), and on a
PostgreSQL inbox with a Redis queue (`postgres+redis`) or a PostgreSQL queue (`postgres+pghuey`),
against the servers named by TEST_DATABASE_URL and TEST_REDIS_URL (support/backends.py says what
happens without them). Each PostgreSQL run gets a schema of its own (the inbox's and Huey's tables
both), dropped afterwards; each Redis run flushes its database index first. Tests that do not request
`backend` run on SQLite.

The helpers these fixtures use, and that tests import, are in tests/support/.
"""

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool
from support.backends import BACKENDS, TEST_REDIS_URL, Backend, flush_redis, postgres_base_url, schema_url, server_url
from support.deliveries import Sender, drain
from support.processes import Process, free_port, process_env
from support.standin import API_KEY, CLUSTER_ID, ROUTE_ID, UNKNOWN_ID, standin_api
from werkzeug.serving import make_server

from config import Settings, load_settings
from inbox import Inbox
from optipick_standin import StandInApi
from services import Services
from signatures import new_secret
from webapp import create_app


@pytest.fixture
def secret() -> str:
    """A fresh webhook signing secret, in Svix's format."""
    return new_secret()


@pytest.fixture
def api() -> Iterator[StandInApi]:
    """The stand-in OptiPick API on a free loopback port, with one route and one cluster result."""
    with standin_api().serve() as standin:
        yield standin


# Backends ---------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_admin() -> Iterator[Any]:
    """An engine on TEST_DATABASE_URL for creating and dropping the tests' schemas."""
    engine = create_engine(postgres_base_url(), poolclass=NullPool)
    yield engine
    engine.dispose()


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
    flush_redis(url)
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


# The receiver in this process -------------------------------------------------------------------


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
    """The receiver's settings, read from `environ` alone (no .env)."""
    return load_settings(environ, env_file=None)


@pytest.fixture
def services(settings: Settings) -> Iterator[Services]:
    """The receiver's inbox, queue, client, handlers and processor, closed afterwards."""
    built = Services.build(settings)
    yield built
    built.close()


@pytest.fixture
def app(services: Services) -> Flask:
    return create_app(services=services)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def sender(client: FlaskClient, secret: str) -> Sender:
    """Sends deliveries signed with the receiver's secret to its app."""
    return Sender(client, secret)


@pytest.fixture
def server(app: Flask) -> Iterator[int]:
    """The test's app (sharing `services`) behind werkzeug's threaded server on a free loopback port, for what
    the test client cannot show (chunked bodies, concurrent sockets, a command sending to a running receiver);
    yields the port."""
    httpd = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield httpd.server_port
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


@pytest.fixture
def stored_events(sender: Sender, services: Services, api: StandInApi) -> list[str]:
    """Four events, one per outcome, stored and processed for real; their message ids, oldest first."""
    api.fail_first("cluster", CLUSTER_ID, (403, {}, {"message": "Forbidden"}))
    sent = [
        sender.send({"request_id": ROUTE_ID}, path="/webhook/route"),  # done
        sender.send({"request_id": CLUSTER_ID}, path="/webhook/cluster"),  # dead: the API refuses the key
        sender.send({"request_id": UNKNOWN_ID}, path="/webhook/route"),  # retrying: no result yet
        sender.send({"type": "message.attempt.exhausted", "request_id": ROUTE_ID}),  # ignored
    ]
    assert [r.status_code for r in sent] == [200] * 4
    drain(services)  # the retry is scheduled 10 s ahead, so the retrying event stays retrying
    return [r.request.headers["svix-id"] for r in sent]


@pytest.fixture
def inbox(environ: dict[str, str]) -> Iterator[Inbox]:
    """The receiver's inbox, read from the test as another process would."""
    opened = Inbox.open(environ["DATABASE_URL"])
    yield opened
    opened.close()


# The receiver as real processes (support/processes.py has the helpers) --------------------------


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., Process]]:
    """Start `python <args>` in the project directory; every process started is gone after the test."""
    started: list[Process] = []

    def start(args: list[str], env: dict[str, str]) -> Process:
        process = Process(args, env, tmp_path / f"process-{len(started) + 1}.log")
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop(timeout=5)


@pytest.fixture
def port() -> int:
    """A free loopback port for a receiver process."""
    return free_port()


@pytest.fixture
def base_url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def receiver_env(environ: dict[str, str], tmp_path: Path, port: int) -> Callable[..., dict[str, str]]:
    """The environment of a receiver process on `port` whose own handler appends each call to tmp_path/count
    (support.counting_handler); given `slow_seconds`, the handler first appends `started` to tmp_path/started
    and takes that long (support.slow_handler). Keyword arguments are further settings."""

    def build(slow_seconds: float | None = None, **overrides: str) -> dict[str, str]:
        handler = {"HANDLER_MODULES": "support.counting_handler"}
        if slow_seconds is not None:
            handler = {
                "HANDLER_MODULES": "support.slow_handler",
                "STARTED_FILE": str(tmp_path / "started"),
                "SLOW_SECONDS": str(slow_seconds),
            }
        return process_env(environ, PORT=str(port), COUNT_FILE=str(tmp_path / "count"), **handler, **overrides)

    return build
