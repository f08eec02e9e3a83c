"""`python main.py check` (checks.py): each part of the configuration is tried for real, a broken part FAILs
on its own line naming what to fix, and the local clock is compared with the API's."""

import re
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from support.processes import config_env, free_port
from support.standin import API_KEY

import checks
from inbox import Inbox
from main import cli

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
