"""Values given to the command line and the settings are checked, each bad one refused in one line
(exit code 2) before anything is read or changed, never with a traceback; and a storage fault in the
worker is logged in one line naming the database error, with no traceback and no second failing write.
"""

import json
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import Engine, event
from support.deliveries import drain
from support.processes import PROJECT_DIR, config_env, process_env, wait_until
from support.standin import ROUTE_ID

from clock import utcnow
from config import load_settings
from errors import ConfigError
from inbox import Status, StoredEvent
from main import cli
from signatures import new_message_id

BODY = json.dumps({"request_id": ROUTE_ID})


def run(environ: dict[str, str], *args: str, **overrides: str) -> Result:
    """`python main.py …` in-process with exactly the settings of `environ` (and `overrides`)."""
    return CliRunner().invoke(cli, list(args), env=config_env(environ, **overrides))


def assert_refused_in_one_line(result: Result, *words: str) -> None:
    """Exit code 2, no traceback, and one `Error:` line holding `words`."""
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    [line] = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    for word in words:
        assert word in line, line


@pytest.fixture
def stored(sender, services) -> list[StoredEvent]:
    """A done event and a dead one, both received just now."""
    done = sender.send(BODY, path="/webhook/route", msg_id=new_message_id())
    assert done.status_code == 200
    drain(services)
    dead_id = new_message_id()
    assert sender.send(BODY, path="/webhook/route", msg_id=dead_id).status_code == 200
    dead = services.inbox.by_message_id(dead_id)
    assert dead is not None
    claim = services.inbox.claim(dead.id, lease_seconds=60)
    assert claim is not None
    services.inbox.finish(claim, Status.DEAD, "gave up")
    events = services.inbox.latest()
    assert sorted(e.status for e in events) == [Status.DEAD, Status.DONE]
    return events


def snapshot(services) -> list[tuple[str, Status, int]]:
    return [(e.message_id, e.status, e.attempts) for e in services.inbox.latest()]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["events", "--limit", "99999999999999999999"], ["--limit", "not in the range"]),
        (["events", "--limit", "1000001"], ["--limit", "not in the range"]),
        (["prune", "--older-than", "9999999999"], ["--older-than", "not in the range"]),
        (["prune", "--older-than", "36501"], ["--older-than", "not in the range"]),
        (["recover", "--since", "99999999999d"], ["--since", "reaches back too far"]),
        (["recover", "--since", "99999999999999999999999w"], ["--since", "reaches back too far"]),
        (["recover", "--since", "36501d"], ["--since", "reaches back too far"]),
        (["recover", "--since", "2h", "--until", "99999999999h"], ["--until", "reaches back too far"]),
        (["recover", "--since", "0001-01-01T00:00+05:00"], ["--since", "out of range"]),
        (["recover", "--since", "2099-01-01"], ["--since", "in the future"]),
        (["recover", "--since", "2h", "--until", "3h"], ["--until", "not after --since"]),
        (["recover", "--since", "2h", "--until", "2h"], ["--until", "not after --since"]),
        (["recover", "--since", "1h", "--status", ""], ["--status", "at least one status"]),
        (["recover", "--since", "1h", "--status", " , "], ["--status", "at least one status"]),
        (["recover", "--since", "1h", "--status", "dead,finished"], ["--status", "'finished' is not a status"]),
        (["show", "\udcff"], ["MESSAGE_ID", "is not a message id"]),
        (["show", "msg with spaces"], ["MESSAGE_ID", "is not a message id"]),
        (["replay", "\udcff"], ["MESSAGE_IDS", "is not a message id"]),
    ],
    ids=[
        "limit-huge",
        "limit-over-a-million",
        "older-than-huge",
        "older-than-over-a-century",
        "since-age-huge",
        "since-weeks-huge",
        "since-over-a-century",
        "until-age-huge",
        "since-before-year-1-utc",
        "since-in-the-future",
        "until-before-since",
        "until-equal-to-since",
        "status-empty",
        "status-only-commas",
        "status-unknown",
        "show-undecodable-id",
        "show-id-with-spaces",
        "replay-undecodable-id",
    ],
)
def test_a_bad_value_is_refused_in_one_line_and_changes_nothing(environ, services, stored, args, words):
    """Each bad value is a usage error in one line naming the option, and nothing stored changes."""
    before = snapshot(services)
    assert_refused_in_one_line(run(environ, *args), *words)
    assert snapshot(services) == before


def test_recover_with_an_empty_status_does_not_replay_done_events(environ, services, stored):
    """`--status ""` used to select every status, done included; now it is refused, and the done event
    is not replayed (nor the dead one)."""
    result = run(environ, "recover", "--since", "1h", "--status", "")
    assert result.exit_code == 2
    assert sorted(e.status for e in services.inbox.latest()) == [Status.DEAD, Status.DONE]


def test_values_at_the_bounds_are_accepted(environ, services, stored):
    """The largest limit and age, and a window ending now, are accepted."""
    assert run(environ, "events", "--limit", "1000000").exit_code == 0
    assert run(environ, "prune", "--older-than", "36500").exit_code == 0
    recovered = run(environ, "recover", "--since", "36500d", "--until", "0s", "--dry-run")
    assert recovered.exit_code == 0, recovered.output
    assert recovered.stdout.startswith("1 event(s) match")


@pytest.mark.slow
def test_show_of_an_undecodable_id_as_a_process_is_one_line(environ):
    """`python main.py show` given bytes that are not UTF-8 (as a shell passes them) exits 2 in one line."""
    completed = subprocess.run(
        [sys.executable, "main.py", "show", b"\xff\xfe"],
        cwd=PROJECT_DIR,
        env=process_env(environ),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert completed.returncode == 2
    assert "Traceback" not in completed.stderr
    [line] = [line for line in completed.stderr.splitlines() if line.startswith("Error:")]
    assert "is not a message id" in line


@pytest.mark.parametrize("value", ["0", "0.5", "15", "60", "ten", "nan", "inf", "-3"])
def test_a_bad_ack_deadline_stops_start_up_in_one_line(environ, value):
    """ACK_DEADLINE_SECONDS outside 1 to 14 (or not a number) is a configuration error naming it."""
    with pytest.raises(ConfigError, match="ACK_DEADLINE_SECONDS") as raised:
        load_settings({**environ, "ACK_DEADLINE_SECONDS": value}, env_file=None)
    assert "\n" not in str(raised.value)
    result = run(environ, "events", ACK_DEADLINE_SECONDS=value)
    assert result.exit_code == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("configuration error: ACK_DEADLINE_SECONDS")


@pytest.mark.parametrize(("value", "seconds"), [("1", 1.0), ("2.5", 2.5), ("14", 14.0), ("", 10.0)])
def test_an_ack_deadline_in_range_is_read(environ, value, seconds):
    """Whole or decimal seconds from 1 to 14 are read; unset means 10."""
    assert load_settings({**environ, "ACK_DEADLINE_SECONDS": value}, env_file=None).ack_deadline == seconds


def test_a_huge_prune_after_days_stops_start_up_in_one_line(environ):
    """PRUNE_AFTER_DAYS beyond a century would overflow the hourly prune: refused at start-up."""
    with pytest.raises(ConfigError, match="PRUNE_AFTER_DAYS=99999999999 is out of range"):
        load_settings({**environ, "PRUNE_AFTER_DAYS": "99999999999"}, env_file=None)


# Storage faults in the worker ------------------------------------------------------------------------


def read_only(dbapi_connection: object, _record: object) -> None:
    """SQLite's read-only mode: every write fails with "attempt to write a readonly database"."""
    dbapi_connection.execute("pragma query_only = 1")  # type: ignore[attr-defined]


@contextmanager
def failing_writes(engine: Engine) -> Iterator[list[str]]:
    """From now on every write through `engine` fails; yields the database errors raised meanwhile."""
    errors: list[str] = []

    def count(context: object) -> None:
        errors.append(str(getattr(context, "original_exception", "")))

    event.listen(engine, "connect", read_only)
    event.listen(engine, "handle_error", count)
    engine.dispose()
    try:
        yield errors
    finally:
        event.remove(engine, "connect", read_only)
        event.remove(engine, "handle_error", count)
        engine.dispose()


def assert_one_line_naming(records: list[logging.LogRecord], *words: str) -> None:
    """Exactly one warning or error, one line, without a traceback, naming `words`."""
    loud = [record for record in records if record.levelno >= logging.WARNING]
    assert len(loud) == 1, [record.getMessage() for record in loud]
    [record] = loud
    message = record.getMessage()
    assert record.exc_info is None
    assert "\n" not in message
    for word in words:
        assert word in message, message
    assert "UPDATE" not in message
    assert "INSERT" not in message


def test_an_outcome_that_cannot_be_recorded_is_one_line_and_one_write(services, sender, api, caplog):
    """When the inbox stops taking writes while an event is fetched, recording its outcome fails: one
    warning naming the database error, no traceback, and no retry written after the failed outcome."""
    caplog.set_level(logging.INFO)
    message_id = new_message_id()
    assert sender.send(BODY, path="/webhook/route", msg_id=message_id).status_code == 200
    stored = services.inbox.by_message_id(message_id)
    assert stored is not None
    api.delay = 0.5
    outcome: list[object] = []
    worker = threading.Thread(target=lambda: outcome.append(services.processor.process(stored.id)))
    worker.start()
    wait_until(lambda: api.total_fetches() == 1, "the fetch to start")
    caplog.clear()
    with failing_writes(services.inbox.database.bookkeeping) as errors:
        worker.join(timeout=30)
    assert outcome == [None]
    assert len(errors) == 1, errors
    assert_one_line_naming(caplog.records, message_id, "OperationalError: attempt to write a readonly database")
    assert "unexpected error" not in caplog.text
    after = services.inbox.by_message_id(message_id)
    assert after is not None
    assert after.status is Status.PROCESSING  # left to run again once its lease runs out


def test_a_claim_that_cannot_be_written_is_one_line(services, sender, caplog):
    """A claim the inbox refuses is one warning naming the database error, without the SQL."""
    message_id = new_message_id()
    assert sender.send(BODY, path="/webhook/route", msg_id=message_id).status_code == 200
    stored = services.inbox.by_message_id(message_id)
    assert stored is not None
    caplog.clear()
    with failing_writes(services.inbox.database.bookkeeping):
        assert services.processor.process(stored.id) is None
    assert_one_line_naming(caplog.records, f"event {stored.id}", "attempt to write a readonly database")


def test_a_reconciler_that_cannot_write_is_one_line(services, sender, caplog):
    """The reconciler meeting an inbox that refuses writes logs one line and enqueues nothing, instead
    of handing Huey an exception (a traceback every minute)."""
    assert sender.send(BODY, path="/webhook/route", msg_id=new_message_id()).status_code == 200
    caplog.clear()
    later = utcnow() + timedelta(minutes=5)
    with failing_writes(services.inbox.database.bookkeeping):
        assert services.processor.reconcile(now=later) == 0
    assert_one_line_naming(caplog.records, "reconciler", "attempt to write a readonly database")
