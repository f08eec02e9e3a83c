"""`python main.py send-test`, `demo` and `check`: a test delivery reaches a running receiver and says what its
answer means; the demo runs the whole flow with no configuration and leaves nothing behind; the check tries
each part of the configuration for real and names what to fix."""

import json
import re
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from support.deliveries import drain
from support.processes import PROJECT_DIR, Process, config_env, free_port, process_env, wait_until
from support.standin import API_KEY, CLUSTER_ID, ROUTE_ID

import checks
import defaults
from inbox import Inbox, Status
from main import cli
from signatures import new_secret

# send-test -------------------------------------------------------------------------------------

SENT_LINE = re.compile(r"^sent (msg_test_[0-9a-f]{32}) \((\S+), request (\S+)\) to (\S+)$", re.MULTILINE)
WAREHOUSE_TYPE = "route.optimized.Example.673f48095739843f4de65ec9"


def send_test(environ: dict[str, str], port: int, *args: str) -> Result:
    """`python main.py send-test …` in-process, configured for a receiver on 127.0.0.1:`port`."""
    return CliRunner().invoke(cli, ["send-test", *args], env=config_env(environ, HOST="127.0.0.1", PORT=str(port)))


def sent_msg_id(output: str) -> str:
    match = SENT_LINE.search(output)
    assert match is not None, output
    return match.group(1)


@pytest.mark.parametrize(
    ("args", "event_type", "request_id"),
    [
        ([], "route.optimized", ROUTE_ID),
        (["--type", "cluster.optimized", "--request-id", CLUSTER_ID], "cluster.optimized", CLUSTER_ID),
        (["--type", WAREHOUSE_TYPE], WAREHOUSE_TYPE, ROUTE_ID),
    ],
    ids=["defaults", "cluster", "warehouse-type"],
)
def test_send_test_is_accepted_stored_and_processed(
    environ, services, server, api, secret, args, event_type, request_id
):
    """An accepted test delivery exits 0, prints its id and "200: accepted", and is stored with --type/--request-id."""
    result = send_test(environ, server, *args)

    assert result.exit_code == 0, result.output
    msg_id = sent_msg_id(result.stdout)
    assert SENT_LINE.search(result.stdout).groups()[1:] == (
        event_type,
        request_id,
        f"http://127.0.0.1:{server}/webhook",
    )
    assert "\n200: accepted" in result.stdout
    stored = services.inbox.by_msg_id(msg_id)
    assert stored is not None
    assert stored.status is Status.RECEIVED
    assert (stored.event_type, stored.request_id) == (event_type, request_id)
    assert json.loads(stored.body) == {"type": event_type, "request_id": request_id}
    assert secret not in result.output
    assert secret.removeprefix("whsec_") not in result.output

    drain(services)  # the delivery is a real one: the worker takes it all the way
    assert services.inbox.by_msg_id(msg_id).status is Status.DONE
    assert api.fetches[(event_type.split(".")[0], request_id)] == 1


def test_send_test_with_another_secret_is_refused(environ, services, server, secret):
    """--secret with a secret the receiver does not know: 401, exit 1, nothing stored, WEBHOOK_SECRET named."""
    other = new_secret()
    result = send_test(environ, server, "--secret", other)

    assert result.exit_code == 1
    sent_msg_id(result.stdout)
    [meaning] = [line for line in result.stdout.splitlines() if line.startswith("401: ")]
    assert "WEBHOOK_SECRET" in meaning
    assert services.inbox.count() == 0
    for hidden in (secret, other, secret.removeprefix("whsec_"), other.removeprefix("whsec_")):
        assert hidden not in result.output


def test_send_test_with_an_unusable_request_id_says_the_payload_is_unusable(environ, services, server):
    """A request id that cannot be used gets 400 (stored as invalid) and exits 1, saying the payload is unusable."""
    result = send_test(environ, server, "--request-id", "../../etc")

    assert result.exit_code == 1
    assert "\n400: signed correctly, but the payload is unusable" in result.stdout
    assert services.inbox.by_msg_id(sent_msg_id(result.stdout)).status is Status.INVALID


def test_send_test_to_a_closed_port_cannot_reach(environ, services):
    """--url at a port nobody listens on exits 1 with "could not reach" and the URL, and sends nothing."""
    url = f"http://127.0.0.1:{free_port()}/webhook"
    result = send_test(environ, free_port(), "--url", url)

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"could not reach {url}: ConnectionError")
    assert services.inbox.count() == 0


@pytest.mark.slow
def test_send_test_as_a_process_reaches_a_running_receiver(environ, tmp_path, api):
    """`python main.py send-test` beside `python main.py` (same configuration): 200, and the event gets done."""
    port = free_port()
    env = process_env(environ, PORT=str(port))
    receiver = Process(["main.py"], env, tmp_path / "receiver.log")
    try:
        receiver.wait_healthy(f"http://127.0.0.1:{port}")
        completed = subprocess.run(
            [sys.executable, "main.py", "send-test"],
            cwd=PROJECT_DIR,
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert completed.returncode == 0, completed.stdout + completed.stderr
        msg_id = sent_msg_id(completed.stdout)
        assert "\n200: accepted" in completed.stdout

        inbox = Inbox.open(environ["DATABASE_URL"])
        try:
            wait_until(
                lambda: (event := inbox.by_msg_id(msg_id)) is not None and event.status is Status.DONE,
                "the test delivery to be done",
                watch=[receiver],
            )
        finally:
            inbox.engine.dispose()
        assert api.fetches[("route", ROUTE_ID)] == 1
        assert f"{msg_id}: done" in receiver.log()
    finally:
        receiver.stop(timeout=5)


# demo ------------------------------------------------------------------------------------------

DEMO_OUTCOMES = [
    (200, "done"),
    (200, "done"),
    (200, "done"),
    (200, "duplicate"),
    (200, "done"),
    (200, "ignored"),
    (401, "not stored"),
]
OUTCOME_LINE = re.compile(r"^(\d)\. HTTP (\d{3}), (done|duplicate|ignored|not stored|\S+)\b.*\[ok\]$")


def files_under(folder: Path) -> list[str] | None:
    """Every path under `folder`, or None when it does not exist."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else None


@pytest.mark.slow
@pytest.mark.parametrize(
    "configuration",
    [{}, {"WEBHOOK_SECRET": "not-a-secret", "OPTIPICK_API_URL": "ftp://nowhere", "DATABASE_URL": "nonsense"}],
    ids=["no-configuration", "broken-configuration"],
)
def test_demo_runs_the_whole_flow_without_configuration(tmp_path, configuration):
    """`python main.py demo` needs no settings, shows all 7 deliveries ending as expected, and leaves no file behind."""
    instance_before = files_under(defaults.INSTANCE_DIR)
    results_before = files_under(PROJECT_DIR / "results")
    scratch = tmp_path / "tmp"
    scratch.mkdir()

    completed = subprocess.run(
        [sys.executable, "main.py", "demo"],
        cwd=PROJECT_DIR,
        env=process_env(configuration, TMPDIR=str(scratch)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 0, completed.stdout + completed.stderr
    out = completed.stdout
    assert "demo finished: every delivery ended as it should" in out
    sent, _, outcome = out.partition("\nwhat the receiver did:\n")
    assert [line.split(".")[0] for line in sent.splitlines() if re.match(r"^\d\. ", line)] == [
        str(n) for n in range(1, 8)
    ]
    outcomes = [OUTCOME_LINE.match(line) for line in outcome.splitlines() if re.match(r"^\d\. ", line)]
    assert all(outcomes), outcome
    assert [(int(m.group(2)), m.group(3)) for m in outcomes] == DEMO_OUTCOMES
    assert [int(m.group(1)) for m in outcomes] == list(range(1, 8))
    assert "inbox rows: 5 for 7 deliveries" in out

    assert files_under(scratch) == []  # its temporary folder is gone
    assert files_under(defaults.INSTANCE_DIR) == instance_before
    assert files_under(PROJECT_DIR / "results") == results_before


# check -----------------------------------------------------------------------------------------

CHECK_NAMES = ("webhook secrets", "API key", "clock", "database", "queue", "results folder", "handlers")
OTHER_API_KEY = "another-key-" + "x" * 20
CHECK_LINE = re.compile(rf"^(OK|WARN|FAIL)\s+({'|'.join(CHECK_NAMES)})\s+(.+)$")


def run_check(environ: dict[str, str], **overrides: str) -> Result:
    """`python main.py check` in-process, with exactly the settings of `environ` plus `overrides`."""
    return CliRunner().invoke(cli, ["check"], env=config_env(environ, **overrides))


def check_lines(result: Result) -> dict[str, tuple[str, str]]:
    """Each check's name → (label, detail), checking every line has that form and each check appears once."""
    lines = result.stdout.splitlines()
    matches = [CHECK_LINE.match(line) for line in lines]
    assert all(matches), result.output
    found = {m.group(2): (m.group(1), m.group(3)) for m in matches}
    assert list(found) == list(CHECK_NAMES), result.output
    return found


def assert_only_failing(result: Result, failing: dict[str, list[str]]) -> None:
    """Exit 1; the checks in `failing` FAIL with details containing each given text; every other check is OK."""
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    lines = check_lines(result)
    for name, (label, detail) in lines.items():
        if name in failing:
            assert label == "FAIL", (name, detail)
            for text in failing[name]:
                assert text in detail, (name, detail)
        else:
            assert label == "OK", (name, detail)


def assert_no_key_printed(result: Result, *hidden: str) -> None:
    for value in (API_KEY, *hidden):
        assert value not in result.output


def test_check_passes_against_the_standin(environ, secret):
    """With a working configuration every check is OK, the command exits 0, and no secret is printed."""
    result = run_check(environ, HANDLER_MODULES="support.counting_handler")

    assert result.exit_code == 0, result.output
    lines = check_lines(result)
    assert {label for label, _ in lines.values()} == {"OK"}
    assert lines["handlers"][1] == "built-in handlers and support.counting_handler"
    assert_no_key_printed(result, secret, secret.removeprefix("whsec_"))


def under_a_file(tmp_path: Path, name: str) -> Path:
    """A path whose parent is a regular file: it can never be created (chmod would not stop root)."""
    blocker = tmp_path / "file.txt"
    blocker.write_text("a regular file, not a folder\n")
    return blocker / name


def api_unreachable(tmp_path: Path, environ: dict[str, str]) -> dict[str, str]:
    return {"OPTIPICK_API_URL": f"http://127.0.0.1:{free_port()}"}


def key_refused(tmp_path: Path, environ: dict[str, str]) -> dict[str, str]:
    return {"OPTIPICK_API_KEY": OTHER_API_KEY}


def schema_mismatch(tmp_path: Path, environ: dict[str, str]) -> dict[str, str]:
    inbox = Inbox.open(environ["DATABASE_URL"])
    inbox.engine.dispose()
    with sqlite3.connect(tmp_path / "inbox.db") as connection:
        connection.execute("UPDATE inbox_schema SET version = 99")
    connection.close()
    return {}


def database_under_a_file(tmp_path: Path, environ: dict[str, str]) -> dict[str, str]:
    return {"DATABASE_URL": f"sqlite:///{under_a_file(tmp_path, 'inbox.db')}"}


def queue_under_a_file(tmp_path: Path, environ: dict[str, str]) -> dict[str, str]:
    return {"QUEUE_URL": f"sqlite:///{under_a_file(tmp_path, 'queue.db')}"}


def results_under_a_file(tmp_path: Path, environ: dict[str, str]) -> dict[str, str]:
    return {"RESULTS_DIR": str(under_a_file(tmp_path, "results"))}


def handler_missing(tmp_path: Path, environ: dict[str, str]) -> dict[str, str]:
    return {"HANDLER_MODULES": "support.example_handlers, no_such_handler_module"}


Breakage = Callable[[Path, dict[str, str]], dict[str, str]]


@pytest.mark.parametrize(
    ("breakage", "failing"),
    [
        pytest.param(
            api_unreachable,
            {"API key": ["cannot reach http://127.0.0.1:", "OPTIPICK_API_URL"], "clock": ["did not answer"]},
            id="api-unreachable",
        ),
        pytest.param(key_refused, {"API key": ["HTTP 403", "OPTIPICK_API_KEY"]}, id="key-refused"),
        pytest.param(
            schema_mismatch, {"database": ["schema version 99", "DATABASE_URL"]}, id="database-schema-version"
        ),
        pytest.param(
            database_under_a_file,
            {"database": ["DATABASE_URL"]},
            id="database-unopenable",
        ),
        pytest.param(queue_under_a_file, {"queue": ["cannot open QUEUE_URL"]}, id="queue-unopenable"),
        pytest.param(results_under_a_file, {"results folder": ["RESULTS_DIR=", "not writable"]}, id="results-dir"),
        pytest.param(
            handler_missing,
            {"handlers": ["HANDLER_MODULES", "'no_such_handler_module'", "cannot be imported"]},
            id="handler-not-importable",
        ),
    ],
)
def test_check_fails_each_broken_part_alone(environ, tmp_path, secret, breakage: Breakage, failing):
    """Each broken part FAILs on its own line naming what to fix, the other parts stay OK, and the exit code is 1."""
    overrides = breakage(tmp_path, environ)
    result = run_check(environ, **overrides)

    assert_only_failing(result, failing)
    assert_no_key_printed(result, secret, secret.removeprefix("whsec_"), OTHER_API_KEY)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("WEBHOOK_SECRET", ""),
        ("WEBHOOK_SECRET", "whsec_not*base64*at*all"),
        ("WEBHOOK_SECRET", "whpk_" + "A" * 44),
        ("OPTIPICK_API_KEY", ""),
        ("DATABASE_URL", "mysql://user@host/db"),
    ],
    ids=["secret-missing", "secret-not-base64", "secret-public-key", "key-missing", "database-unsupported"],
)
def test_check_reports_a_configuration_error_as_one_fail_line(environ, secret, variable, value):
    """A setting that does not parse prints one "FAIL  configuration: …" line naming the variable, and exits 1."""
    result = run_check(environ, **{variable: value})

    assert result.exit_code == 1
    [line] = result.output.splitlines()
    assert line.startswith("FAIL  configuration: ")
    assert variable in line
    assert_no_key_printed(result, secret, secret.removeprefix("whsec_"), "A" * 44)


@pytest.mark.parametrize(
    ("skew", "label"),
    [
        (0, "OK"),
        (29.9, "OK"),
        (-29.9, "OK"),
        (30, "WARN"),
        (-30, "WARN"),
        (299.9, "WARN"),
        (-299.9, "WARN"),
        (300, "FAIL"),
        (-300, "FAIL"),
        (3600, "FAIL"),
        (-86400, "FAIL"),
    ],
)
def test_check_clock_thresholds(skew, label):
    """The clock is OK within 30 s of the API's, WARN from 30 s and FAIL from 300 s, ahead or behind."""
    server_time = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    result = checks.check_clock(server_time, server_time + timedelta(seconds=skew))

    assert result.label == label
    assert result.ok is (label != "FAIL")
    if label != "OK":
        assert f"{abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'} the API's" in result.detail
        assert "NTP" in result.detail


def test_check_clock_without_a_date_header_warns():
    """With no Date header to compare with, the clock check passes with a warning saying so."""
    result = checks.check_clock(None, datetime.now(UTC))
    assert (result.label, result.ok) == ("WARN", True)
    assert "no Date header" in result.detail


@pytest.mark.parametrize(
    ("skew", "label", "words"),
    [(120, "WARN", "ahead of"), (-120, "WARN", "behind"), (600, "FAIL", "ahead of"), (-600, "FAIL", "behind")],
)
def test_run_checks_compares_the_local_clock_with_the_apis(settings, skew, label, words):
    """Against the stand-in's Date header, a local clock off by minutes makes the clock check WARN or FAIL alone."""
    results = checks.run_checks(settings, now=lambda: datetime.now(UTC) + timedelta(seconds=skew))

    by_name = {result.name: result for result in results}
    assert list(by_name) == list(CHECK_NAMES)
    assert by_name["clock"].label == label
    assert words in by_name["clock"].detail
    assert all(result.label == "OK" for name, result in by_name.items() if name != "clock")
