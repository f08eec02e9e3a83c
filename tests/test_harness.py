"""The test harness itself (tests/support/): what the PostgreSQL/Redis variants do without their servers, and
the process helpers the bench shares."""

import signal
import subprocess
import sys

import pytest
from support import backends
from support.backends import TEST_DATABASE_URL, TEST_REDIS_URL, postgres_base_url
from support.processes import PROJECT_DIR, Process, free_port, process_env, wait_until


@pytest.fixture
def servers_not_asked_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    """support.backends as at the start of a session, before any server was asked (this session's answers
    are kept for the other tests)."""
    monkeypatch.setattr(backends, "_server_problems", {})


@pytest.mark.parametrize(
    ("ci", "database_url", "outcome", "reason"),
    [
        ("", None, pytest.skip.Exception, "TEST_DATABASE_URL is not set"),
        ("true", None, pytest.fail.Exception, "TEST_DATABASE_URL is not set"),
        ("", "postgresql+psycopg://postgres@127.0.0.1:{closed_port}/test", pytest.fail.Exception, "does not answer"),
    ],
    ids=["unset-skips", "unset-in-ci-fails", "silent-server-fails"],
)
def test_missing_servers_skip_locally_and_fail_in_ci(
    ci, database_url, outcome, reason, monkeypatch, servers_not_asked_yet
):
    """Without TEST_DATABASE_URL a PostgreSQL variant skips, unless CI=true; a server that does not answer fails it."""
    monkeypatch.setenv("CI", ci)
    if database_url is None:
        monkeypatch.delenv(TEST_DATABASE_URL, raising=False)
    else:
        monkeypatch.setenv(TEST_DATABASE_URL, database_url.format(closed_port=free_port()))
    monkeypatch.setenv(TEST_REDIS_URL, "redis://127.0.0.1:1/0")  # never reached: the database is checked first
    # What the `backend` fixture of a postgres+pghuey variant asks first, where the skip or failure happens.
    with pytest.raises(outcome, match=reason):
        postgres_base_url()


def test_the_process_helpers_import_nothing_from_the_tests():
    """support/processes.py imports no conftest, pytest or other helper, so the bench can import it from the root."""
    code = (
        "import sys, tests.support.processes; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('conftest', 'pytest', '_pytest', 'support')"
        " or m.startswith('tests.support.') and m != 'tests.support.processes'))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_DIR, env={}, capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout == "[]\n"


def test_a_process_in_a_session_of_its_own_leads_its_group_and_stops(tmp_path):
    """A Process with new_session and die_with_parent runs its program leading a group of its own; stop() ends it."""
    program = "import os, time; print('leads its group:', os.getpgrp() == os.getpid(), flush=True); time.sleep(60)"
    process = Process(["-c", program], process_env({}), tmp_path / "p.log", new_session=True, die_with_parent=True)
    try:
        wait_until(lambda: "leads its group:" in process.log(), "the program to start", watch=[process])
        assert "leads its group: True" in process.log()
    finally:
        process.stop(timeout=5)
    assert process.popen.returncode == -signal.SIGTERM
