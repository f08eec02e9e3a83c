"""The receiver as a real process (`python main.py`), killed and restarted: nothing acknowledged is lost,
interrupted work is finished after a restart, and each result reaches the handlers once."""

import signal
from datetime import UTC, datetime
from pathlib import Path

import pytest
from support.counting_handler import read_counts
from support.deliveries import post_delivery
from support.processes import Process, wait_until
from support.standin import API_KEY, CLUSTER_ID, ROUTE_ID

from inbox import Status, StoredEvent

pytestmark = pytest.mark.slow


def base_url(port: int) -> str:
    return f"http://127.0.0.1:{port}"


def result_files(environ: dict[str, str]) -> list[Path]:
    return sorted(Path(environ["RESULTS_DIR"]).rglob("*.json"))


def leases_over(events: list[StoredEvent]) -> bool:
    """Whether every lease among `events` has run out (the reconciler may then take them back)."""
    now = datetime.now(UTC)
    return all(e.lease_until < now for e in events if e.status is Status.PROCESSING and e.lease_until)


def assert_no_secrets(processes: list[Process], secret: str) -> None:
    for process in processes:
        log = process.log()
        assert secret not in log
        assert secret.removeprefix("whsec_") not in log
        assert API_KEY not in log


def test_kill_during_fetch_is_finished_once_after_restart(
    launch, receiver_env, environ, inbox, api, secret, port, tmp_path
):
    """A process killed mid-fetch leaves the event processing; a restart finishes it, handlers called once."""
    api.delay = 1.0
    env = receiver_env(LEASE_SECONDS="2")
    first = launch(["main.py"], env)
    first.wait_healthy(base_url(port))

    msg_id, status = post_delivery(base_url(port), secret, {"request_id": ROUTE_ID}, path="/webhook/route")
    assert status == 200
    wait_until(lambda: api.fetches[("route", ROUTE_ID)] == 1, "the fetch to start", watch=[first])
    first.kill()

    interrupted = inbox.by_message_id(msg_id)
    assert interrupted is not None
    assert interrupted.status is Status.PROCESSING
    assert read_counts(tmp_path / "count") == []
    assert result_files(environ) == []

    wait_until(lambda: leases_over([interrupted]), "the lease to run out", timeout=10)
    second = launch(["main.py"], env)
    wait_until(lambda: inbox.by_message_id(msg_id).status is Status.DONE, "the event to be done", watch=[second])

    assert read_counts(tmp_path / "count") == [f"route {ROUTE_ID} {msg_id}"]
    assert result_files(environ) == [Path(environ["RESULTS_DIR"]) / "route" / f"{ROUTE_ID}.json"]
    assert api.fetches[("route", ROUTE_ID)] == 2
    assert inbox.by_message_id(msg_id).attempts == 2
    assert_no_secrets([first, second], secret)


def test_kill_after_acknowledgement_loses_nothing(launch, receiver_env, environ, inbox, api, secret, port, tmp_path):
    """Deliveries acknowledged right before a SIGKILL are all kept and each handled exactly once after a restart."""
    api.delay = 1.0
    routes = [ROUTE_ID, "0" * 23 + "1", "0" * 23 + "2"]
    clusters = [CLUSTER_ID, "0" * 23 + "3", "0" * 23 + "4"]
    for request_id in routes[1:]:
        api.add_result("route", request_id)
    for request_id in clusters[1:]:
        api.add_result("cluster", request_id)
    deliveries = [
        ("route", {"request_id": routes[0]}, "/webhook/route"),
        ("cluster", {"request_id": clusters[0]}, "/webhook/cluster"),
        ("route", {"request_id": routes[1], "type": "route.optimized"}, "/webhook"),
        ("cluster", {"request_id": clusters[1], "type": "cluster.optimized"}, "/webhook"),
        ("route", {"request_id": routes[2]}, "/webhook/route.optimized.Example.673f0a1b2c3d4e5f6a7b8c9d"),
        ("cluster", {"request_id": clusters[2]}, "/webhook/cluster"),
    ]
    # One worker thread: at most one event is in a fetch when the process dies; the rest wait in the queue.
    first = launch(["main.py"], receiver_env(LEASE_SECONDS="2", WORKER_THREADS="1"))
    first.wait_healthy(base_url(port))

    expected = {}
    for kind, payload, path in deliveries:
        msg_id, status = post_delivery(base_url(port), secret, payload, path=path)
        assert status == 200, path
        expected[(kind, payload["request_id"])] = f"{kind} {payload['request_id']} {msg_id}"
    first.kill()

    at_kill = inbox.latest()
    assert len(at_kill) == len(deliveries)
    assert {e.status for e in at_kill} <= {Status.RECEIVED, Status.PROCESSING, Status.DONE}
    assert any(e.status is Status.RECEIVED for e in at_kill), "nothing was left between acknowledgement and work"

    wait_until(lambda: leases_over(inbox.latest()), "the leases to run out", timeout=10)
    second = launch(["main.py"], receiver_env(LEASE_SECONDS="2", WORKER_THREADS="4"))
    # Usually a few seconds. Should SIGKILL have hit the moment between Huey's dequeue and the claim, that
    # event waits in `received` for the reconciler's next minute (the designed, slower path): allow for it.
    wait_until(
        lambda: all(e.status is Status.DONE for e in inbox.latest()),
        "every event to be done",
        timeout=90,
        watch=[second],
    )

    assert inbox.count() == len(deliveries)
    counts = read_counts(tmp_path / "count")
    assert sorted(counts) == sorted(expected.values())
    assert len(result_files(environ)) == len(deliveries)
    assert all(api.fetches[key] >= 1 for key in expected)
    assert_no_secrets([first, second], secret)


def test_sigint_lets_the_running_fetch_finish(launch, receiver_env, inbox, api, secret, port, tmp_path):
    """SIGINT during a slow fetch stops the process cleanly (exit code 0) after the event is done."""
    api.delay = 1.5
    receiver = launch(["main.py"], receiver_env())
    receiver.wait_healthy(base_url(port))

    msg_id, status = post_delivery(base_url(port), secret, {"request_id": CLUSTER_ID}, path="/webhook/cluster")
    assert status == 200
    wait_until(lambda: api.fetches[("cluster", CLUSTER_ID)] == 1, "the fetch to start", watch=[receiver])
    receiver.signal(signal.SIGINT)

    assert receiver.wait(timeout=30) == 0, receiver.log()[-3000:]
    assert inbox.by_message_id(msg_id).status is Status.DONE
    assert read_counts(tmp_path / "count") == [f"cluster {CLUSTER_ID} {msg_id}"]
    assert api.fetches[("cluster", CLUSTER_ID)] == 1
    assert_no_secrets([receiver], secret)


def test_gunicorn_and_worker_process_a_delivery(launch, receiver_env, environ, inbox, secret, port, tmp_path):
    """Under gunicorn (two workers) plus `main.py worker`, a signed delivery is acknowledged and taken to done."""
    env = receiver_env()
    web = launch(["-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "2", "webapp:create_app()"], env)
    worker = launch(["main.py", "worker"], env)
    web.wait_healthy(base_url(port))

    msg_id, status = post_delivery(base_url(port), secret, {"request_id": ROUTE_ID}, path="/webhook/route")
    assert status == 200
    wait_until(lambda: inbox.by_message_id(msg_id).status is Status.DONE, "the event to be done", watch=[web, worker])

    assert read_counts(tmp_path / "count") == [f"route {ROUTE_ID} {msg_id}"]
    assert result_files(environ) == [Path(environ["RESULTS_DIR"]) / "route" / f"{ROUTE_ID}.json"]
    assert f"{msg_id}: done" in worker.log()
    assert f"{msg_id}: done" not in web.log()

    worker.signal(signal.SIGINT)
    assert worker.wait(timeout=30) == 0, worker.log()[-3000:]
    assert_no_secrets([web, worker], secret)
