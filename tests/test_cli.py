"""The command line (main.py): the options of `events`, `show` of an unknown id, `send-test` to a running
receiver, and every command refusing a bad configuration with exit code 2 and one line naming the variable,
never printing a secret."""

import json
import re
import subprocess
import sys

import pytest
from click.testing import CliRunner, Result
from support.cli import run_cli, run_events, table_rows
from support.deliveries import drain
from support.processes import PROJECT_DIR, Process, config_env, free_port, process_env, wait_until
from support.standin import API_KEY, CLUSTER_ID, ROUTE_ID

from inbox import Inbox, Status
from main import cli
from signatures import new_secret


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
def test_events_filters_by_status_and_limit(environ, stored_events, args, expected):
    """--status keeps only events in that status; --limit keeps only the newest events."""
    rows = table_rows(run_events(environ, *args).stdout)
    assert [row["status"] for row in rows] == expected


def test_events_json_honours_status_and_limit(environ, stored_events):
    """--json with --status and --limit prints only the matching, newest events."""
    events = json.loads(run_events(environ, "--json", "--status", "dead", "--limit", "1").stdout)
    assert [(e["message_id"], e["status"]) for e in events] == [(stored_events[1], "dead")]


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


def test_events_on_an_empty_status_says_so(environ, stored_events):
    """A status no stored_events event is in prints "no events with status …", not an empty table."""
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
def test_events_as_a_real_process(environ, stored_events):
    """`python main.py events` run as a process prints the same events as in-process, newest first."""
    table = run_main(environ, "events")
    assert table.returncode == 0, table.stderr
    assert [row["message_id"] for row in table_rows(table.stdout)] == stored_events[::-1]

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


def test_show_unknown_id_exits_1(environ, services):
    """`show` of a message id that is not stored says so on stderr and exits 1."""
    result = run_cli(environ, "show", "msg_nope")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == "no event with message id 'msg_nope'\n"


# send-test ----------------------------------------------------------------------------------------


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
    stored = services.inbox.by_message_id(msg_id)
    assert stored is not None
    assert stored.status is Status.RECEIVED
    assert (stored.event_type, stored.request_id) == (event_type, request_id)
    assert json.loads(stored.body) == {"type": event_type, "request_id": request_id}
    assert secret not in result.output
    assert secret.removeprefix("whsec_") not in result.output

    drain(services)  # the delivery is a real one: the worker takes it all the way
    assert services.inbox.by_message_id(msg_id).status is Status.DONE
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
    assert services.inbox.by_message_id(sent_msg_id(result.stdout)).status is Status.INVALID


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
                lambda: (event := inbox.by_message_id(msg_id)) is not None and event.status is Status.DONE,
                "the test delivery to be done",
                watch=[receiver],
            )
        finally:
            inbox.engine.dispose()
        assert api.fetches[("route", ROUTE_ID)] == 1
        assert f"{msg_id}: done" in receiver.log()
    finally:
        receiver.stop(timeout=5)
