"""The backends a test can run on, and the PostgreSQL and Redis servers the non-SQLite ones need.

A test that requests conftest's `backend` fixture runs three times: on SQLite files (`sqlite`), and on a
PostgreSQL inbox with a Redis queue (`postgres+redis`) or a PostgreSQL queue (`postgres+pghuey`), against
the servers named by TEST_DATABASE_URL and TEST_REDIS_URL. Without those variables the PostgreSQL/Redis
runs are skipped, or fail when CI=true (CI must run them); with a variable set but its server silent,
they fail.
"""

import os
from dataclasses import dataclass

import pytest
import redis
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

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


def schema_url(base_url: str, schema: str) -> str:
    """`base_url` with `schema` first on its search_path, for the inbox and for Huey alike."""
    url = make_url(base_url)
    options = url.query.get("options", "")
    options = options if isinstance(options, str) else " ".join(options)
    return url.update_query_dict({"options": f"{options} -csearch_path={schema}".strip()}).render_as_string(
        hide_password=False
    )


def flush_redis(url: str) -> None:
    """Empty the Redis database index of `url`."""
    client = redis.Redis.from_url(url, socket_timeout=SERVER_TIMEOUT_SECONDS)
    try:
        client.flushdb()
    finally:
        client.close()
