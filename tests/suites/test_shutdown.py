"""Stopping `python main.py` while a slow handler runs: SIGTERM or SIGINT lets it finish within
SHUTDOWN_GRACE_SECONDS or gives the event back for the next start, a kill leaves it to the lease, and in
every case the event ends `done` with the handler completed exactly once, never lost and never doubled.

Stop signals are sent as a process manager sends them, to the process; the kernel may hand such a signal to
any of its threads, so one test also sends it to a thread other than the main one (tgkill) and shows the stop
is still noticed at once.
"""

import ctypes
import errno
import os
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests
from support.counting_handler import read_counts
from support.deliveries import post_delivery
from support.processes import Launch, Process, wait_until
from support.standin import API_KEY, ROUTE_ID

from inbox import Status

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="sends signals to chosen threads with tgkill"),
]


def start_slow_event(launch: Launch, env: dict[str, str], base_url: str, secret: str, tmp_path: Path):
    """Start a receiver, deliver one route event and return (process, message id) once its handler is running."""
    receiver = launch(["main.py"], env)
    receiver.wait_healthy(base_url)
    msg_id, status = post_delivery(base_url, secret, {"request_id": ROUTE_ID}, path="/webhook/route")
    assert status == 200
    wait_until(
        lambda: read_counts(tmp_path / "started") == [f"started {msg_id}"],
        "the slow handler to start",
        watch=[receiver],
    )
    return receiver, msg_id


def send_to_thread(process: Process, signum: int, main_thread: bool = True) -> None:
    """Send `signum` to the process's main thread, or else to another of its threads, with tgkill(2): the
    kernel may deliver a process-directed signal to either."""
    pid = process.popen.pid
    libc = ctypes.CDLL(None, use_errno=True)
    if main_thread:
        targets = [pid]
    else:
        # Oldest first: the consumer's long-lived threads, not a request thread that may be gone already.
        targets = sorted(int(tid) for tid in os.listdir(f"/proc/{pid}/task") if int(tid) != pid)
        assert targets, "the receiver runs no other thread"
    for tid in targets:
        if libc.tgkill(pid, tid, signum) == 0:
            return
        error = ctypes.get_errno()
        if error != errno.ESRCH:  # a thread that ended meanwhile: try the next one
            raise OSError(error, os.strerror(error))
    raise ProcessLookupError(f"no thread of {pid} took the signal")


def completed_line(msg_id: str) -> str:
    return f"route {ROUTE_ID} {msg_id}"


def assert_no_secrets(processes: list[Process], secret: str) -> None:
    for process in processes:
        log = process.log()
        assert secret.removeprefix("whsec_") not in log
        assert API_KEY not in log


def test_sigterm_lets_a_slow_handler_finish_within_the_grace_period(
    launch, receiver_env, inbox, secret, base_url, tmp_path
):
    """SIGTERM during a 3 s handler with a 20 s grace period: the handler finishes, the event is done, exit 0."""
    receiver, msg_id = start_slow_event(
        launch, receiver_env(3, SHUTDOWN_GRACE_SECONDS="20"), base_url, secret, tmp_path
    )
    receiver.signal(signal.SIGTERM)

    assert receiver.wait(timeout=15) == 0, receiver.log()[-3000:]
    event = inbox.by_message_id(msg_id)
    assert event.status is Status.DONE
    assert event.attempts == 1
    assert read_counts(tmp_path / "count") == [completed_line(msg_id)]
    assert [entry.action for entry in inbox.history_of(event.id)] == ["claimed", "done"]
    log = receiver.log()
    assert "received SIGTERM: stopping" in log
    assert "gave back" not in log
    assert_no_secrets([receiver], secret)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_stop_past_the_grace_period_gives_the_event_back_and_a_restart_finishes_it_once(
    launch, receiver_env, inbox, secret, base_url, tmp_path, signum
):
    """A stop past a 1 s grace gives the running event back, due now; the next start does it, the handler once."""
    first, msg_id = start_slow_event(launch, receiver_env(6, SHUTDOWN_GRACE_SECONDS="1"), base_url, secret, tmp_path)
    signalled = time.monotonic()
    first.signal(signum)

    assert first.wait(timeout=10) == 0, first.log()[-3000:]
    assert time.monotonic() - signalled < 5, "the stop waited for the handler instead of the 1 s grace period"
    assert f"received {signum.name}: stopping" in first.log()
    assert "gave back 1 event(s)" in first.log()
    assert read_counts(tmp_path / "count") == []  # the cut-off run never completed

    released = inbox.by_message_id(msg_id)
    assert released.status is Status.RETRYING  # not left `processing` until a lease runs out
    assert released.claim_token is None
    assert released.lease_until is None
    assert released.next_attempt_at is not None
    assert released.next_attempt_at <= datetime.now(UTC)
    assert released.attempts == 0  # the cut-off attempt is not counted against the event
    assert [entry.action for entry in inbox.history_of(released.id)] == ["claimed", "released"]

    second = launch(["main.py"], receiver_env(0.2))
    wait_until(lambda: inbox.by_message_id(msg_id).status is Status.DONE, "the event to be done", watch=[second])

    assert read_counts(tmp_path / "count") == [completed_line(msg_id)]
    assert read_counts(tmp_path / "started") == [f"started {msg_id}"] * 2
    assert inbox.by_message_id(msg_id).attempts == 1
    assert [entry.action for entry in inbox.history_of(released.id)] == ["claimed", "released", "claimed", "done"]
    assert_no_secrets([first, second], secret)


def healthz_refused(base_url: str) -> bool:
    try:
        requests.get(f"{base_url}/healthz", timeout=1)
    except requests.ConnectionError:
        return True
    except requests.Timeout:  # accepted by the kernel but never answered: still not refused
        return False
    return False


def test_web_side_stops_accepting_while_the_worker_drains(launch, receiver_env, inbox, secret, base_url, tmp_path):
    """After SIGTERM the port refuses connections at once, while the running handler is still being waited for."""
    receiver, msg_id = start_slow_event(
        launch, receiver_env(4, SHUTDOWN_GRACE_SECONDS="20"), base_url, secret, tmp_path
    )
    receiver.signal(signal.SIGTERM)

    wait_until(lambda: healthz_refused(base_url), "/healthz to refuse connections", timeout=3)
    assert receiver.running(), "the process was already gone: this shows nothing about draining"
    assert read_counts(tmp_path / "count") == []  # the handler is still running
    assert inbox.by_message_id(msg_id).status is Status.PROCESSING

    assert receiver.wait(timeout=15) == 0, receiver.log()[-3000:]
    assert inbox.by_message_id(msg_id).status is Status.DONE
    assert read_counts(tmp_path / "count") == [completed_line(msg_id)]


def test_kill_during_a_slow_handler_is_finished_once_after_the_lease_and_a_restart(
    launch, receiver_env, inbox, secret, base_url, tmp_path
):
    """SIGKILL mid-handler leaves the event processing; once the 2 s lease runs out a restart completes it once."""
    first, msg_id = start_slow_event(launch, receiver_env(6, LEASE_SECONDS="2"), base_url, secret, tmp_path)
    first.kill()

    killed = inbox.by_message_id(msg_id)
    assert killed.status is Status.PROCESSING
    assert killed.lease_until is not None
    assert read_counts(tmp_path / "count") == []

    wait_until(lambda: datetime.now(UTC) > killed.lease_until, "the lease to run out", timeout=10)
    # A short handler now, well inside the 2 s lease, so the periodic reconciler cannot take it twice.
    second = launch(["main.py"], receiver_env(0.2, LEASE_SECONDS="2"))
    wait_until(lambda: inbox.by_message_id(msg_id).status is Status.DONE, "the event to be done", watch=[second])

    assert read_counts(tmp_path / "count") == [completed_line(msg_id)]
    assert read_counts(tmp_path / "started") == [f"started {msg_id}"] * 2
    assert inbox.by_message_id(msg_id).attempts == 2
    assert_no_secrets([first, second], secret)


def test_a_signal_delivered_to_another_thread_stops_the_receiver_promptly(launch, receiver_env, base_url):
    """SIGTERM taken by a thread other than the main one (the kernel may pick any) still stops the process at once."""
    receiver = launch(["main.py"], receiver_env(0))
    receiver.wait_healthy(base_url)
    send_to_thread(receiver, signal.SIGTERM, main_thread=False)

    assert receiver.wait(timeout=3) == 0
    assert "received SIGTERM: stopping" in receiver.log()
