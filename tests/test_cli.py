"""`python main.py events` lists stored events; every command refuses a bad configuration with exit code 2
and one line naming the variable, never printing a secret."""

import json
import subprocess
import sys
from datetime import datetime

import pytest
from click.testing import CliRunner
from support.deliveries import drain
from support.processes import PROJECT_DIR, config_env, process_env
from support.standin import API_KEY, CLUSTER_ID, ROUTE_ID

from main import cli

UNKNOWN_ID = "0" * 24  # a request id the stand-in API has no result for
COLUMNS = ("received_at", "message_id", "status", "attempts", "type", "request_id", "last_error")
JSON_FIELDS = {
    "message_id",
    "type",
    "request_id",
    "status",
    "attempts",
    "last_error",
    "received_at",
    "updated_at",
    "next_attempt_at",
}


@pytest.fixture
def stored(sender, services, api) -> list[str]:
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


def run_events(environ: dict[str, str], *args: str):
    """`python main.py events …` in-process, with exactly the settings of `environ` (no .env, no shell)."""
    result = CliRunner().invoke(cli, ["events", *args], env=config_env(environ))
    assert result.exit_code == 0, result.output
    return result


def table_rows(output: str) -> list[dict[str, str]]:
    header, *lines = output.splitlines()
    assert header.split() == list(COLUMNS)
    # Every cell but the last is one word; last_error is the rest of the line.
    return [dict(zip(COLUMNS, line.split(None, len(COLUMNS) - 1), strict=True)) for line in lines]


def test_events_table_lists_newest_first_with_every_column(environ, stored, secret):
    """The table shows one line per event, newest first, with id, status, attempts, type, request id and error."""
    result = run_events(environ)
    rows = table_rows(result.stdout)

    assert [row["message_id"] for row in rows] == stored[::-1]
    ignored, retrying, dead, done = rows
    assert (done["status"], done["attempts"], done["type"], done["request_id"], done["last_error"]) == (
        "done",
        "1",
        "route.optimized",
        ROUTE_ID,
        "-",
    )
    assert (dead["status"], dead["type"], dead["request_id"]) == ("dead", "cluster.optimized", CLUSTER_ID)
    assert "403" in dead["last_error"]
    assert (retrying["status"], retrying["attempts"], retrying["request_id"]) == ("retrying", "1", UNKNOWN_ID)
    assert "404" in retrying["last_error"]
    assert (ignored["status"], ignored["attempts"], ignored["type"]) == ("ignored", "0", "message.attempt.exhausted")
    for row in rows:
        assert datetime.fromisoformat(row["received_at"]).utcoffset() is not None
    assert secret not in result.output
    assert API_KEY not in result.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--status", "dead"], ["dead"]),
        (["--status", "retrying"], ["retrying"]),
        (["--limit", "1"], ["ignored"]),
        (["--limit", "2"], ["ignored", "retrying"]),
        (["--status", "done", "--limit", "1"], ["done"]),
    ],
)
def test_events_filters_by_status_and_limit(environ, stored, args, expected):
    """--status keeps only events in that status; --limit keeps only the newest events."""
    rows = table_rows(run_events(environ, *args).stdout)
    assert [row["status"] for row in rows] == expected


def test_events_json_is_one_array_with_every_field(environ, stored):
    """--json prints one JSON array, newest first, each event with ids, type, status, attempts, error and times."""
    events = json.loads(run_events(environ, "--json").stdout)

    assert [e["message_id"] for e in events] == stored[::-1]
    assert all(set(e) == JSON_FIELDS for e in events)
    ignored, retrying, dead, done = events
    assert {k: done[k] for k in ("type", "request_id", "status", "attempts", "last_error", "next_attempt_at")} == {
        "type": "route.optimized",
        "request_id": ROUTE_ID,
        "status": "done",
        "attempts": 1,
        "last_error": None,
        "next_attempt_at": None,
    }
    assert (dead["status"], dead["attempts"], dead["request_id"]) == ("dead", 1, CLUSTER_ID)
    assert "403" in dead["last_error"]
    assert retrying["status"] == "retrying"
    assert datetime.fromisoformat(retrying["next_attempt_at"]) > datetime.fromisoformat(retrying["updated_at"])
    assert ignored["status"] == "ignored"
    for event in events:
        assert datetime.fromisoformat(event["received_at"]) <= datetime.fromisoformat(event["updated_at"])


def test_events_json_honours_status_and_limit(environ, stored):
    """--json with --status and --limit prints only the matching, newest events."""
    events = json.loads(run_events(environ, "--json", "--status", "dead", "--limit", "1").stdout)
    assert [(e["message_id"], e["status"]) for e in events] == [(stored[1], "dead")]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], "no events\n"),
        (["--status", "dead"], "no events with status dead\n"),
        (["--json"], "[]\n"),
    ],
)
def test_events_on_an_empty_inbox(environ, args, expected):
    """With nothing stored, the table says so (naming the status filter) and --json prints an empty array."""
    assert run_events(environ, *args).stdout == expected


def test_events_on_an_empty_status_says_so(environ, stored):
    """A status no stored event is in prints "no events with status …", not an empty table."""
    assert run_events(environ, "--status", "duplicate").stdout == "no events with status duplicate\n"


@pytest.mark.parametrize("args", [["--status", "finished"], ["--limit", "0"], ["--limit", "many"]])
def test_events_rejects_bad_options(environ, args):
    """An unknown status or a limit below 1 is a usage error (exit code 2)."""
    result = CliRunner().invoke(cli, ["events", *args], env=config_env(environ))
    assert result.exit_code == 2
    assert "Invalid value" in result.stderr


def run_main(environ: dict[str, str], *args: str, **overrides: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "main.py", *args],
        cwd=PROJECT_DIR,
        env=process_env(environ, **overrides),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.slow
def test_events_as_a_real_process(environ, stored):
    """`python main.py events` run as a process prints the same events as in-process, newest first."""
    table = run_main(environ, "events")
    assert table.returncode == 0, table.stderr
    assert [row["message_id"] for row in table_rows(table.stdout)] == stored[::-1]

    as_json = run_main(environ, "events", "--json", "--status", "retrying")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == json.loads(run_events(environ, "--json", "--status", "retrying").stdout)


BAD_SECRET_BODY = "not*base64*at*all+" + "x" * 20
PUBLIC_KEY = "whpk_" + "A" * 44


@pytest.mark.slow
@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("WEBHOOK_SECRET", ""),
        ("WEBHOOK_SECRET", "whsec_" + BAD_SECRET_BODY),
        ("WEBHOOK_SECRET", "whsec_"),
        ("WEBHOOK_SECRET", '"{secret}"'),
        ("WEBHOOK_SECRET", "{secret_body}"),
        ("WEBHOOK_SECRET", PUBLIC_KEY),
        ("WEBHOOK_SECRET", "{secret} " + BAD_SECRET_BODY),
        ("OPTIPICK_API_KEY", ""),
        ("OPTIPICK_API_KEY", f"{API_KEY} {API_KEY}"),
        ("OPTIPICK_API_KEY", f'"{API_KEY}"'),
        ("PORT", "http"),
        ("PORT", "65536"),
        ("OPTIPICK_API_URL", "http://optipick.api.optioryx.com"),
        ("WEBHOOK_DEFAULT_EVENT_TYPE", "order.created"),
    ],
    ids=[
        "secret-missing",
        "secret-not-base64",
        "secret-empty-key",
        "secret-double-quoted",
        "secret-without-prefix",
        "secret-public-key",
        "secret-second-of-two-bad",
        "key-missing",
        "key-with-space",
        "key-quoted",
        "port-not-a-number",
        "port-too-big",
        "api-url-http-remote-host",
        "default-type-unknown",
    ],
)
def test_configuration_error_exits_2_with_one_line(environ, secret, variable, value):
    """A bad setting exits with code 2 and one stderr line naming the variable, never printing a secret."""
    value = value.format(secret=secret, secret_body=secret.removeprefix("whsec_"))
    completed = run_main(environ, "events", **{variable: value})

    assert completed.returncode == 2
    assert completed.stdout == ""
    [line] = completed.stderr.splitlines()
    assert line.startswith("configuration error: ")
    assert variable in line
    for hidden in (secret, secret.removeprefix("whsec_"), BAD_SECRET_BODY, PUBLIC_KEY.removeprefix("whpk_"), API_KEY):
        assert hidden not in completed.stderr


@pytest.mark.slow
@pytest.mark.parametrize("command", [[], ["worker"]], ids=["default", "worker"])
def test_every_command_refuses_a_bad_configuration(environ, command):
    """Starting the receiver or the worker without WEBHOOK_SECRET fails at once with exit code 2."""
    completed = run_main(environ, *command, WEBHOOK_SECRET="")
    assert completed.returncode == 2
    [line] = completed.stderr.splitlines()
    assert line.startswith("configuration error: WEBHOOK_SECRET is not set")
    assert API_KEY not in completed.stderr
