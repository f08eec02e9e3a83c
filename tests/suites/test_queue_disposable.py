"""The queue is disposable, the inbox is the truth: a SQLite queue file that cannot be used (garbage
bytes) is moved aside at start-up as `queue.db.corrupt-<time>` with one warning, a new one is made, and
the reconciler enqueues again what the inbox says is due; the commands on stored events need the inbox
only, and `replay` and `recover` leave events due when they cannot enqueue them."""

import json
import logging
import re
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from sqlalchemy.engine import make_url
from support.deliveries import drain
from support.processes import config_env, process_env, wait_until
from support.standin import CLUSTER_ID, ROUTE_ID

from clock import utcnow
from inbox import Inbox, NewDelivery, Status
from main import cli
from services import Services
from signatures import new_message_id, signed_headers
from work_queue import set_aside_if_unusable

GARBAGE = bytes(range(256)) * 16  # 4 KiB that no SQLite header starts with
ASIDE = re.compile(r"queue\.db\.corrupt-\d{8}T\d{6}Z")
BODY = json.dumps({"request_id": ROUTE_ID})


def queue_file(environ: dict[str, str]) -> Path:
    return Path(make_url(environ["QUEUE_URL"]).database or "")


def corrupt(path: Path) -> None:
    path.write_bytes(GARBAGE)


def set_aside(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if ASIDE.fullmatch(path.name))


def due_delivery(inbox: Inbox) -> int:
    """A route delivery stored five minutes ago and never processed (its task was in the lost queue)."""
    message_id = new_message_id()
    delivery = NewDelivery(
        message_id,
        Status.RECEIVED,
        BODY.encode(),
        {"svix-id": message_id},
        event_type="route.optimized",
        kind="route",
        request_id=ROUTE_ID,
    )
    return inbox.add(delivery, now=utcnow() - timedelta(minutes=5)).event.id


def test_a_corrupt_queue_is_moved_aside_at_start_and_what_it_carried_is_enqueued_again(
    environ, settings, inbox, api, caplog
):
    """Building the services on a queue file of garbage moves it to queue.db.corrupt-<time> (its bytes
    kept), says so in one warning, and starts a new queue; the reconciler enqueues the due event the old
    queue carried, and it is processed."""
    event_id = due_delivery(inbox)
    corrupt(queue_file(environ))
    caplog.set_level(logging.INFO)
    services = Services.build(settings)
    try:
        [aside] = set_aside(queue_file(environ).parent)
        assert aside.read_bytes() == GARBAGE
        warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
        assert len(warnings) == 1
        assert aside.name in warnings[0].message
        assert "cannot be used" in warnings[0].message
        assert services.processor.reconcile() == 1
        assert drain(services) == 1
        stored = services.inbox.get(event_id)
        assert stored is not None
        assert stored.status is Status.DONE
    finally:
        services.close()


def test_a_usable_queue_is_left_where_it_is(environ, settings, tmp_path):
    """A missing queue file, a good one, and a good one another program holds locked are all left alone
    (a lock only means waiting)."""
    path = queue_file(environ)
    assert set_aside_if_unusable(path) is None  # not there yet
    Services.build(settings).close()  # makes it
    assert set_aside_if_unusable(path) is None
    held = sqlite3.connect(path, isolation_level=None)
    held.execute("begin exclusive")
    try:
        assert set_aside_if_unusable(path) is None
    finally:
        held.rollback()
        held.close()
    assert set_aside(tmp_path) == []


def run(environ: dict[str, str], *args: str):
    """`python main.py …` in-process with exactly the settings of `environ`."""
    return CliRunner().invoke(cli, list(args), env=config_env(environ))


@pytest.fixture
def dead_event(environ: dict[str, str], inbox: Inbox) -> str:
    """A stored event whose processing gave up (so `recover` takes it); its message id."""
    event_id = due_delivery(inbox)
    claim = inbox.claim(event_id, lease_seconds=60)
    assert claim is not None
    inbox.finish(claim, Status.DEAD, "the OptiPick API refused OPTIPICK_API_KEY (HTTP 403)")
    return claim.event.message_id


def test_events_and_show_need_only_the_inbox(environ, dead_event):
    """With a queue of garbage, `events` and `show` print the stored events, and leave the queue as is."""
    corrupt(queue_file(environ))
    listed = run(environ, "events")
    assert listed.exit_code == 0, listed.output
    assert dead_event in listed.stdout
    shown = run(environ, "show", dead_event)
    assert shown.exit_code == 0, shown.output
    assert "status        dead" in shown.stdout
    assert queue_file(environ).read_bytes() == GARBAGE


@pytest.mark.parametrize("command", ["replay", "recover"])
def test_replay_and_recover_leave_events_due_when_the_queue_cannot_be_opened(environ, inbox, dead_event, command):
    """With a queue of garbage, `replay` and `recover` put the event back as received all the same, say in
    one line that it is left for the reconciler, and exit 0; the reconciler then finds it due."""
    corrupt(queue_file(environ))
    args = ["replay", dead_event] if command == "replay" else ["recover", "--since", "1h"]
    result = run(environ, *args)
    assert result.exit_code == 0, result.output
    assert f"{dead_event}: dead → received, left due for the reconciler" in result.stdout
    [problem] = [line for line in result.stderr.splitlines() if "queue" in line]
    assert problem.startswith("the queue cannot be opened (QUEUE_URL: ")
    event = inbox.by_message_id(dead_event)
    assert event is not None
    assert event.status is Status.RECEIVED
    later = utcnow() + timedelta(minutes=1)
    assert event.id in inbox.due(now=later)


def test_prune_needs_only_the_inbox(environ, dead_event):
    """`prune` works with a queue of garbage."""
    corrupt(queue_file(environ))
    result = run(environ, "prune")
    assert result.exit_code == 0, result.output
    assert result.stdout == "pruned 0 event(s) older than 30 days\n"


def test_check_warns_about_a_corrupt_queue_and_leaves_it(environ):
    """`check` says the queue file cannot be used and that the service sets it aside when it starts (a
    warning: the inbox is fine), and moves nothing itself."""
    corrupt(queue_file(environ))
    result = run(environ, "check")
    assert result.exit_code == 0, result.output
    [line] = [line for line in result.stdout.splitlines() if " queue " in line]
    assert line.startswith("WARN  queue")
    assert "moves it aside" in line
    assert queue_file(environ).read_bytes() == GARBAGE


def post(base_url: str, secret: str) -> tuple[str, int]:
    """A cluster delivery signed now (another optimization than the route ones stored by hand)."""
    message_id = new_message_id()
    body = json.dumps({"request_id": CLUSTER_ID})
    headers = signed_headers(secret, body, message_id)
    return message_id, requests.post(f"{base_url}/webhook/cluster", data=body, headers=headers, timeout=10).status_code


@pytest.mark.slow
def test_python_main_starts_on_a_corrupt_queue(launch, environ, inbox, secret, port, base_url, tmp_path):
    """`python main.py` with a queue of garbage starts (one warning line, no traceback), processes a
    delivery, and has enqueued again the event the old queue carried."""
    waiting = due_delivery(inbox)
    corrupt(queue_file(environ))
    receiver = launch(["main.py"], process_env(environ, PORT=str(port)))
    receiver.wait_healthy(base_url)
    message_id, status = post(base_url, secret)
    assert status == 200
    for done in (lambda: inbox.get(waiting), lambda: inbox.by_message_id(message_id)):
        wait_until(lambda done=done: done().status is Status.DONE, "the events to be done", watch=[receiver])
    [aside] = set_aside(tmp_path)
    log = receiver.log()
    assert log.count(aside.name) == 1
    assert "Traceback" not in log


@pytest.mark.slow
def test_gunicorn_and_a_worker_start_together_on_a_corrupt_queue(
    launch, environ, inbox, secret, port, base_url, tmp_path
):
    """gunicorn's two workers and `python main.py worker`, started together on a queue of garbage, all
    come up; the file is set aside, and a delivery is processed."""
    corrupt(queue_file(environ))
    env = process_env(environ, PORT=str(port))
    web = launch(["-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "2", "webapp:create_app()"], env)
    worker = launch(["main.py", "worker"], env)
    web.wait_healthy(base_url)
    message_id, status = post(base_url, secret)
    assert status == 200
    wait_until(
        lambda: inbox.by_message_id(message_id).status is Status.DONE, "the event to be done", watch=[web, worker]
    )
    assert set_aside(tmp_path)
    assert "Traceback" not in web.log() + worker.log()
