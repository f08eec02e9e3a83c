"""The worker's side (processing.py), against the real stand-in API and the real SQLite inbox and queue: the
whole flow, every API failure and its outcome, the retry schedule, the reconciler, claims lost to another
worker, duplicates, what the handlers get, how an event's type is found, and giving work back at shutdown."""

import email.utils
import itertools
import json
import logging
import threading
from datetime import UTC, datetime, timedelta

import pytest
from support.deliveries import deliver, drain, route_event, services_with
from support.outcomes import RELEASED, holder_of, result_files, story
from support.processes import free_port
from support.standin import API_KEY, CLUSTER_ID, ROUTE_ID
from werkzeug.wrappers import Request, Response

import defaults
from handlers.registry import Event
from inbox import Status
from optipick_standin import example_result
from results import Result, RouteResult

USER = "673f48095739843f4de65ec9"
SECOND = timedelta(seconds=1)


def seconds(n: float) -> timedelta:
    return timedelta(seconds=n)


class Recorder:
    """A handler that records what it is called with."""

    def __init__(self) -> None:
        self.calls: list[tuple[Event, Result]] = []

    def __call__(self, event: Event, result: Result) -> None:
        self.calls.append((event, result))


# The whole flow ------------------------------------------------------------------------------------


def test_signed_delivery_is_fetched_and_written_once(sender, services, api, settings):
    """A route delivery is stored, processed by the queue, fetched once and written to the results folder."""
    response = sender.send({"request_id": ROUTE_ID}, path="/webhook/route")
    assert response.status_code == 200
    assert drain(services) == 1
    [event] = services.inbox.latest()
    assert event.status is Status.DONE
    assert api.fetches[("route", ROUTE_ID)] == 1
    written = json.loads((settings.results_dir / "route" / f"{ROUTE_ID}.json").read_text())
    assert written["request_id"] == ROUTE_ID


# API failures --------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [401, 403])
def test_refused_api_key_is_dead_at_once(api, services, sender, caplog, capfd, status):
    """401 and 403 mark the event dead on the first attempt, naming OPTIPICK_API_KEY but never the key itself."""
    caplog.set_level(logging.DEBUG)
    api.fail_first("route", ROUTE_ID, (status, {}, {"detail": "Could not validate credentials"}))
    stored = route_event(services, sender)

    now = datetime.now(UTC)
    assert services.processor.process(stored.id, now=now) is Status.DEAD

    row = services.inbox.get(stored.id)
    assert row.status is Status.DEAD
    assert row.attempts == 1
    assert "OPTIPICK_API_KEY" in row.last_error
    assert f"HTTP {status}" in row.last_error
    assert API_KEY not in row.last_error
    assert API_KEY not in caplog.text
    out, err = capfd.readouterr()
    assert API_KEY not in out + err
    assert api.fetches[("route", ROUTE_ID)] == 1
    assert services.inbox.due(now=now + timedelta(days=30)) == []  # never picked up again


def test_wrong_api_key_configured_is_dead_and_not_logged(environ, api, caplog):
    """With a key the API does not know, the event is dead and neither key appears in the logs or last_error."""
    caplog.set_level(logging.DEBUG)
    wrong_key = "wrong-key-" + "w" * 24
    with services_with(environ, OPTIPICK_API_KEY=wrong_key) as (services, sender):
        stored = route_event(services, sender)
        assert services.processor.process(stored.id, now=datetime.now(UTC)) is Status.DEAD
        row = services.inbox.get(stored.id)
    assert "OPTIPICK_API_KEY" in row.last_error
    for key in (wrong_key, API_KEY):
        assert key not in row.last_error
        assert key not in caplog.text


@pytest.mark.parametrize("status", [404, 422])
def test_missing_result_retries_with_growing_delays_then_dies(api, services, sender, settings, status):
    """404 and 422 are retried with growing delays, then the event is dead after NOT_FOUND_MAX_ATTEMPTS attempts."""
    limit = defaults.NOT_FOUND_MAX_ATTEMPTS
    api.fail_first("route", ROUTE_ID, *[(status, {}, {"detail": "Request not found"})] * limit)
    stored = route_event(services, sender)

    now = datetime.now(UTC)
    waits = []
    for attempt in range(1, limit):
        assert services.processor.process(stored.id, now=now) is Status.RETRYING
        row = services.inbox.get(stored.id)
        assert (row.status, row.attempts) == (Status.RETRYING, attempt)
        assert f"answered {status}" in row.last_error
        waits.append(row.next_attempt_at - now)
        assert services.processor.process(stored.id, now=row.next_attempt_at - SECOND) is None  # not due yet
        now = row.next_attempt_at
    assert waits == [seconds(d) for d in defaults.RETRY_DELAYS[: limit - 1]]
    assert all(a < b for a, b in itertools.pairwise(waits))

    assert services.processor.process(stored.id, now=now) is Status.DEAD
    row = services.inbox.get(stored.id)
    assert row.attempts == limit
    assert f"gave up after {limit} attempts" in row.last_error
    assert api.fetches[("route", ROUTE_ID)] == limit
    assert result_files(settings) == []


def test_not_found_then_found_is_done(api, services, sender, settings):
    """A result that is not readable at first (404) and then is, is done on the second attempt."""
    api.fail_first("route", ROUTE_ID, (404, {}, {"detail": "Request not found"}))
    stored = route_event(services, sender)
    now = datetime.now(UTC)
    assert services.processor.process(stored.id, now=now) is Status.RETRYING
    assert services.processor.process(stored.id, now=now + seconds(defaults.RETRY_DELAYS[0])) is Status.DONE
    row = services.inbox.get(stored.id)
    assert (row.status, row.attempts, row.last_error) == (Status.DONE, 2, None)
    assert api.fetches[("route", ROUTE_ID)] == 2
    assert result_files(settings) == [f"route/{ROUTE_ID}.json"]


def _http_date(when: datetime) -> str:
    return email.utils.format_datetime(when, usegmt=True)


@pytest.mark.parametrize(
    ("headers", "least", "most"),
    [
        pytest.param(lambda: {"Retry-After": "120"}, 120, 120, id="seconds"),
        pytest.param(lambda: {"Retry-After": _http_date(datetime.now(UTC) + seconds(300))}, 290, 301, id="http-date"),
        pytest.param(lambda: {}, defaults.RETRY_DELAYS[0], defaults.RETRY_DELAYS[0], id="absent"),
        pytest.param(lambda: {"Retry-After": "2"}, defaults.RETRY_DELAYS[0], defaults.RETRY_DELAYS[0], id="shorter"),
        pytest.param(lambda: {"Retry-After": "soon"}, defaults.RETRY_DELAYS[0], defaults.RETRY_DELAYS[0], id="garbage"),
        pytest.param(
            lambda: {"Retry-After": _http_date(datetime.now(UTC) - seconds(3600))},
            defaults.RETRY_DELAYS[0],
            defaults.RETRY_DELAYS[0],
            id="past-date",
        ),
    ],
)
def test_rate_limit_waits_at_least_retry_after(api, services, sender, headers, least, most):
    """429 is retried no sooner than Retry-After (seconds or an HTTP date), and never sooner than the schedule."""
    api.fail_first("route", ROUTE_ID, (429, headers(), {"message": "Too Many Requests"}))
    stored = route_event(services, sender)
    now = datetime.now(UTC)
    assert services.processor.process(stored.id, now=now) is Status.RETRYING
    row = services.inbox.get(stored.id)
    assert seconds(least) <= row.next_attempt_at - now <= seconds(most)
    assert "429" in row.last_error
    assert services.processor.process(stored.id, now=row.next_attempt_at - SECOND) is None
    assert services.processor.process(stored.id, now=row.next_attempt_at) is Status.DONE


@pytest.mark.parametrize("value", ["99999999999999999999", str(400 * 365 * 86400)])
def test_absurd_retry_after_is_bounded(api, services, sender, value):
    """A Retry-After of years is recorded as a retry no later than the longest RETRY_DELAYS entry, never raised."""
    api.fail_first("route", ROUTE_ID, (429, {"Retry-After": value}, {"message": "Too Many Requests"}))
    stored = route_event(services, sender)
    now = datetime.now(UTC)
    assert services.processor.process(stored.id, now=now) is Status.RETRYING
    row = services.inbox.get(stored.id)
    assert row.status is Status.RETRYING
    assert row.next_attempt_at - now <= seconds(max(defaults.RETRY_DELAYS))


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_error_is_retried_then_done(api, services, sender, status):
    """A 5xx answer is retried after the first delay, and the next success marks the event done."""
    api.fail_first("route", ROUTE_ID, (status, {}, {"message": "Internal Server Error"}))
    stored = route_event(services, sender)
    now = datetime.now(UTC)
    assert services.processor.process(stored.id, now=now) is Status.RETRYING
    row = services.inbox.get(stored.id)
    assert row.next_attempt_at == now + seconds(defaults.RETRY_DELAYS[0])
    assert f"answered {status}" in row.last_error
    assert services.processor.process(stored.id, now=row.next_attempt_at) is Status.DONE
    assert services.inbox.get(stored.id).last_error is None
    assert api.fetches[("route", ROUTE_ID)] == 2


def test_server_errors_forever_end_dead_after_max_attempts(environ, api):
    """A result that always fails with 5xx is dead after MAX_ATTEMPTS attempts, with the last error kept."""
    api.fail_first("route", ROUTE_ID, (500, {}, "oops"), (502, {}, "bad gateway"), (503, {}, "unavailable"))
    with services_with(environ, MAX_ATTEMPTS="3") as (services, sender):
        assert services.settings.max_attempts == 3
        stored = route_event(services, sender)
        now = datetime.now(UTC)
        statuses = []
        for _ in range(3):
            statuses.append(services.processor.process(stored.id, now=now))
            row = services.inbox.get(stored.id)
            now = row.next_attempt_at or now
        assert statuses == [Status.RETRYING, Status.RETRYING, Status.DEAD]
        assert row.attempts == 3
        assert "answered 503" in row.last_error
        assert "gave up after 3 attempts" in row.last_error
        assert services.processor.process(stored.id, now=now + timedelta(days=1)) is None
    assert api.fetches[("route", ROUTE_ID)] == 3


def test_retry_schedule_follows_retry_delays(api, services, sender, settings):
    """Each failed attempt waits the next RETRY_DELAYS entry (10 s, 60 s, 5 min, …) until MAX_ATTEMPTS."""
    attempts = settings.max_attempts
    assert attempts == defaults.MAX_ATTEMPTS
    api.fail_first("route", ROUTE_ID, *[(503, {}, "unavailable")] * attempts)
    stored = route_event(services, sender)
    now = datetime.now(UTC)
    waits = []
    for _ in range(attempts - 1):
        assert services.processor.process(stored.id, now=now) is Status.RETRYING
        next_at = services.inbox.get(stored.id).next_attempt_at
        waits.append((next_at - now).total_seconds())
        now = next_at
    expected = [defaults.RETRY_DELAYS[min(i, len(defaults.RETRY_DELAYS) - 1)] for i in range(attempts - 1)]
    assert waits == expected
    assert waits[:3] == [10, 60, 300]
    assert services.processor.process(stored.id, now=now) is Status.DEAD
    assert api.fetches[("route", ROUTE_ID)] == attempts


def test_connection_error_is_retried(environ, caplog):
    """An API that refuses connections leaves the event retrying with the error kept, and the key out of it."""
    caplog.set_level(logging.DEBUG)
    with services_with(environ, OPTIPICK_API_URL=f"http://127.0.0.1:{free_port()}") as (services, sender):
        stored = route_event(services, sender)
        assert services.processor.process(stored.id, now=datetime.now(UTC)) is Status.RETRYING
        row = services.inbox.get(stored.id)
    assert "ConnectionError" in row.last_error
    assert API_KEY not in row.last_error
    assert API_KEY not in caplog.text


@pytest.mark.parametrize(
    ("body", "error"),
    [
        pytest.param("<html><body>Bad gateway</body></html>", "not JSON", id="html"),
        pytest.param("", "not JSON", id="empty"),
        pytest.param({"detail": "ok"}, "unreadable", id="json-not-a-result"),
        pytest.param([1, 2], "unreadable", id="json-array"),
    ],
)
def test_unreadable_200_is_retried(api, services, sender, body, error):
    """A 200 whose body is not JSON, or not a result, is retried; the next good answer makes the event done."""
    api.fail_first("route", ROUTE_ID, (200, {}, body))
    stored = route_event(services, sender)
    now = datetime.now(UTC)
    assert services.processor.process(stored.id, now=now) is Status.RETRYING
    assert error in services.inbox.get(stored.id).last_error
    assert services.processor.process(stored.id, now=now + seconds(defaults.RETRY_DELAYS[0])) is Status.DONE


def test_failed_optimization_is_done_with_error_and_handlers_called(api, services, sender, settings, caplog):
    """A result whose `error` is set is done, with last_error 'optimization failed: …', and the handlers still run."""
    caplog.set_level(logging.INFO)
    failed = {"request_id": ROUTE_ID, "error": "No valid picks", "site_name": "Example", "picks": []}
    api.add_result("route", ROUTE_ID, failed)
    recorder = Recorder()
    services.registry.subscribe("*", recorder)
    stored = route_event(services, sender)

    assert drain(services) == 1
    row = services.inbox.get(stored.id)
    assert row.status is Status.DONE
    assert row.last_error == "optimization failed: No valid picks"
    [(_, result)] = recorder.calls
    assert result.failed
    assert result.error == "No valid picks"
    assert json.loads((settings.results_dir / "route" / f"{ROUTE_ID}.json").read_text()) == failed
    assert f"route {ROUTE_ID} (Example): optimization failed: No valid picks" in caplog.text


# Reconciler ----------------------------------------------------------------------------------------


def test_reconciler_reenqueues_a_lost_received_task(api, services, sender, settings):
    """A received event whose task was lost is enqueued again after RECONCILE_AFTER_SECONDS, not again before."""
    stored = route_event(services, sender)
    services.queue.huey.flush()  # the task is lost
    assert services.queue.pending() == 0
    received = stored.received_at
    after = defaults.RECONCILE_AFTER_SECONDS

    assert services.processor.reconcile(now=received + seconds(1)) == 0
    assert services.processor.reconcile(now=received + seconds(after - 1)) == 0
    assert services.queue.pending() == 0

    first = received + seconds(after + 1)
    assert services.processor.reconcile(now=first) == 1
    assert services.queue.pending() == 1
    assert services.processor.reconcile(now=first + seconds(1)) == 0
    assert services.processor.reconcile(now=first + seconds(after - 1)) == 0
    assert services.queue.pending() == 1

    assert drain(services) == 1
    assert services.inbox.get(stored.id).status is Status.DONE
    assert services.processor.reconcile(now=first + timedelta(days=1)) == 0
    assert api.fetches[("route", ROUTE_ID)] == 1
    assert result_files(settings) == [f"route/{ROUTE_ID}.json"]


def test_reconciler_enqueues_a_received_row_again_while_still_unclaimed(api, services, sender):
    """A received row nobody claimed is enqueued again each RECONCILE_AFTER_SECONDS; the extra task does no harm."""
    stored = route_event(services, sender)
    after = defaults.RECONCILE_AFTER_SECONDS
    first = stored.received_at + seconds(after + 1)
    assert services.processor.reconcile(now=first) == 1
    assert services.processor.reconcile(now=first + seconds(after)) == 1
    assert drain(services) == 3  # the intake's task and two from the reconciler
    assert services.inbox.get(stored.id).status is Status.DONE
    assert api.fetches[("route", ROUTE_ID)] == 1


def test_expired_lease_is_reenqueued_and_processed_exactly_once(api, services, sender, settings):
    """A processing event whose worker died is enqueued again once its lease has run out, and processed once."""
    recorder = Recorder()
    services.registry.subscribe("*", recorder)
    stored = route_event(services, sender)
    services.queue.huey.flush()  # a worker dequeued the task ...
    lease = settings.lease_seconds
    claimed_at = datetime.now(UTC) - seconds(lease + 10)
    dead_worker = services.inbox.claim(stored.id, lease, now=claimed_at)  # ... claimed the event, and died
    assert dead_worker is not None

    assert services.processor.reconcile(now=claimed_at + seconds(lease - 1)) == 0
    assert services.processor.reconcile(now=claimed_at + seconds(lease + 1)) == 1
    assert services.processor.reconcile(now=claimed_at + seconds(lease + 2)) == 1  # a second reconciler pass
    assert drain(services) == 2

    row = services.inbox.get(stored.id)
    assert (row.status, row.attempts) == (Status.DONE, 2)
    assert len(recorder.calls) == 1
    assert api.fetches[("route", ROUTE_ID)] == 1
    assert result_files(settings) == [f"route/{ROUTE_ID}.json"]
    assert services.processor.reconcile() == 0
    assert services.processor.process(stored.id) is None
    assert not services.inbox.finish(dead_worker, Status.DEAD, "zombie")  # the dead worker is fenced off
    assert services.inbox.get(stored.id).status is Status.DONE


def test_reconciler_reenqueues_a_retry_only_when_due(api, services, sender):
    """A retrying event whose scheduled task was lost is enqueued again once next_attempt_at has come."""
    api.fail_first("route", ROUTE_ID, (503, {}, "unavailable"))
    stored = route_event(services, sender)
    services.queue.huey.flush()
    failed_at = datetime.now(UTC) - seconds(60)
    assert services.processor.process(stored.id, now=failed_at) is Status.RETRYING
    services.queue.huey.flush()  # the scheduled retry is lost
    due_at = services.inbox.get(stored.id).next_attempt_at
    assert due_at == failed_at + seconds(defaults.RETRY_DELAYS[0])

    assert services.processor.reconcile(now=due_at - SECOND) == 0
    assert services.queue.pending() == 0
    assert services.processor.reconcile(now=due_at) == 1
    assert drain(services) == 1
    assert services.inbox.get(stored.id).status is Status.DONE
    assert api.fetches[("route", ROUTE_ID)] == 2


def test_retry_is_scheduled_in_the_queue(api, services, sender):
    """A retry is also put in the queue for its time (the fast path), not only recorded in the row."""
    api.fail_first("route", ROUTE_ID, (503, {}, "unavailable"))
    stored = route_event(services, sender)
    services.queue.huey.flush()
    assert services.processor.process(stored.id, now=datetime.now(UTC)) is Status.RETRYING
    assert services.queue.pending() == 1
    task = services.queue.huey.dequeue()
    assert task.args == (stored.id,)
    wait = task.eta - datetime.now(UTC).replace(tzinfo=None)  # huey keeps naive UTC times
    assert seconds(defaults.RETRY_DELAYS[0] - 5) < wait <= seconds(defaults.RETRY_DELAYS[0])


# Claims lost to another worker, and attempts cut off --------------------------------------------------


def test_worker_whose_claim_was_taken_over_during_handlers_does_not_mark_done(api, services, sender, settings):
    """A worker that lost its claim while its handlers ran does not record done; the new owner's claim stands."""
    lease = settings.lease_seconds
    t = datetime.now(UTC)
    takeovers = []

    def slow_handler(event: Event, result: Result) -> None:
        row = services.inbox.by_message_id(event.message_id)
        takeovers.append(services.inbox.claim(row.id, lease, now=t + seconds(lease + 1)))

    services.registry.subscribe("*", slow_handler)
    stored = route_event(services, sender)
    assert services.processor.process(stored.id, now=t) is None

    [takeover] = takeovers
    assert takeover is not None
    row = services.inbox.get(stored.id)
    assert (row.status, row.claim_token, row.attempts, row.last_error) == (
        Status.PROCESSING,
        takeover.token,
        2,
        None,
    )


def test_worker_whose_claim_was_taken_over_during_fetch_skips_handlers(api, services, sender, settings, monkeypatch):
    """A worker that lost its claim while fetching runs no handler and records nothing."""
    lease = settings.lease_seconds
    t = datetime.now(UTC)
    stored = route_event(services, sender)
    takeovers = []
    answer = api.answer

    def answer_after_takeover(request: Request) -> Response:
        takeovers.append(services.inbox.claim(stored.id, lease, now=t + seconds(lease + 1)))
        return answer(request)

    monkeypatch.setattr(api, "answer", answer_after_takeover)
    recorder = Recorder()
    services.registry.subscribe("*", recorder)

    assert services.processor.process(stored.id, now=t) is None
    [takeover] = takeovers
    assert takeover is not None
    assert recorder.calls == []
    assert result_files(settings) == []
    row = services.inbox.get(stored.id)
    assert (row.status, row.claim_token) == (Status.PROCESSING, takeover.token)


def test_interrupted_attempts_end_dead_past_max_attempts(api, services, sender, settings):
    """An event whose every attempt was cut off before recording an outcome is dead once past MAX_ATTEMPTS."""
    stored = route_event(services, sender)
    lease, limit = settings.lease_seconds, settings.max_attempts
    t = datetime.now(UTC)
    for n in range(limit):
        assert services.inbox.claim(stored.id, lease, now=t + n * seconds(lease + 1)) is not None
    final = t + limit * seconds(lease + 1)
    assert services.processor.process(stored.id, now=final) is Status.DEAD
    row = services.inbox.get(stored.id)
    assert row.status is Status.DEAD
    assert f"gave up after {limit} attempts" in row.last_error
    assert "interrupted" in row.last_error
    assert api.total_fetches() == 0


def test_interrupted_last_attempt_keeps_the_earlier_error(environ, api):
    """When the last attempts were cut off, the dead event keeps the error of the last attempt that finished."""
    api.fail_first("route", ROUTE_ID, (503, {}, "unavailable"))
    with services_with(environ, MAX_ATTEMPTS="2") as (services, sender):
        lease = services.settings.lease_seconds
        stored = route_event(services, sender)
        t = datetime.now(UTC)
        assert services.processor.process(stored.id, now=t) is Status.RETRYING
        retry_at = services.inbox.get(stored.id).next_attempt_at
        assert services.inbox.claim(stored.id, lease, now=retry_at) is not None  # attempt 2, cut off
        assert services.processor.process(stored.id, now=retry_at + seconds(lease + 1)) is Status.DEAD
        row = services.inbox.get(stored.id)
    assert "gave up after 2 attempts" in row.last_error
    assert "answered 503" in row.last_error
    assert api.fetches[("route", ROUTE_ID)] == 1


# Duplicates ----------------------------------------------------------------------------------------


def test_second_message_for_the_same_optimization_is_a_duplicate(api, services, sender):
    """A second message for one optimization is a duplicate naming the first: one fetch, one handler call."""
    recorder = Recorder()
    services.registry.subscribe("*", recorder)
    first = route_event(services, sender)
    second = deliver(sender, services.inbox, {"request_id": ROUTE_ID, "type": f"route.optimized.Example.{USER}"})

    assert drain(services) == 2
    assert services.inbox.get(first.id).status is Status.DONE
    row = services.inbox.get(second.id)
    assert row.status is Status.DUPLICATE
    assert first.message_id in row.last_error
    assert api.fetches[("route", ROUTE_ID)] == 1
    assert [event.message_id for event, _ in recorder.calls] == [first.message_id]


def test_a_dead_holder_gives_the_optimization_to_a_later_message(api, services, sender):
    """When the message holding an optimization is dead, a later message for it is processed, not a duplicate."""
    api.fail_first("route", ROUTE_ID, (403, {}, {"message": "Forbidden"}))
    first = route_event(services, sender)
    assert drain(services) == 1
    assert services.inbox.get(first.id).status is Status.DEAD

    second = deliver(sender, services.inbox, {"request_id": ROUTE_ID, "type": f"route.optimized.Example.{USER}"})
    assert drain(services) == 1
    assert services.inbox.get(second.id).status is Status.DONE
    assert holder_of(services.inbox, "route", ROUTE_ID) == second.message_id
    assert api.fetches[("route", ROUTE_ID)] == 2


def test_route_and_cluster_with_the_same_request_id_are_both_processed(api, services, sender, settings):
    """A route result and a cluster result sharing a request id are two optimizations, both processed."""
    api.add_result("cluster", ROUTE_ID)
    route = route_event(services, sender)
    cluster = deliver(sender, services.inbox, {"request_id": ROUTE_ID}, path="/webhook/cluster")
    assert drain(services) == 2
    assert services.inbox.get(route.id).status is Status.DONE
    assert services.inbox.get(cluster.id).status is Status.DONE
    assert api.fetches == {("route", ROUTE_ID): 1, ("cluster", ROUTE_ID): 1}
    assert result_files(settings) == [f"cluster/{ROUTE_ID}.json", f"route/{ROUTE_ID}.json"]


# Handlers ------------------------------------------------------------------------------------------


def test_failing_handler_leaves_event_retrying_and_others_ran(services, sender, settings):
    """End to end: a handler that raises leaves the event retrying, named in last_error; the other handlers ran."""
    calls: list[str] = []

    def flaky_handler(event: Event, result: RouteResult) -> None:
        raise RuntimeError("cannot reach the WMS")

    services.registry.subscribe("*", flaky_handler)
    services.registry.subscribe("route.optimized", lambda e, r: calls.append(e.request_id))
    stored = deliver(sender, services.inbox, {"request_id": ROUTE_ID}, path="/webhook/route")

    assert services.processor.process(stored.id, now=datetime.now(UTC)) is Status.RETRYING
    row = services.inbox.get(stored.id)
    assert row.status is Status.RETRYING
    assert "handler failed" in row.last_error
    assert "flaky_handler" in row.last_error
    assert calls == [ROUTE_ID]
    assert (settings.results_dir / "route" / f"{ROUTE_ID}.json").is_file()  # the built-in handler ran too


def test_general_event_takes_warehouse_and_user_from_the_result(api, services, sender):
    """A route.optimized event takes its warehouse and user id from the result, so warehouse patterns match."""
    document = example_result("route", ROUTE_ID)
    document["ownerId"] = USER
    api.add_result("route", ROUTE_ID, document)
    matched: list[Event] = []
    services.registry.subscribe(f"route.optimized.Example.{USER}", lambda e, r: matched.append(e))
    services.registry.subscribe("route.optimized.Other.*", lambda e, r: pytest.fail("wrong warehouse matched"))

    stored = deliver(sender, services.inbox, {"request_id": ROUTE_ID}, path="/webhook/route.optimized")
    drain(services)

    assert services.inbox.get(stored.id).status is Status.DONE
    [event] = matched
    assert (event.type, event.warehouse, event.user_id) == ("route.optimized", "Example", USER)


def test_warehouse_type_keeps_its_own_warehouse(services, sender):
    """For a warehouse-specific event the warehouse and user id come from the event type, not the result."""
    matched: list[Event] = []
    services.registry.subscribe("cluster.optimized.Other Site.*", lambda e, r: matched.append(e))
    stored = deliver(sender, services.inbox, {"request_id": CLUSTER_ID, "type": "cluster.optimized.Other Site.u7"})
    drain(services)
    assert services.inbox.get(stored.id).status is Status.DONE
    [event] = matched
    assert (event.warehouse, event.user_id) == ("Other Site", "u7")


# Event type resolution -----------------------------------------------------------------------------


def _processed(services, stored):
    assert drain(services) == 1
    row = services.inbox.get(stored.id)
    assert row.status is Status.DONE, row.last_error
    return row


@pytest.mark.parametrize("field", ["type", "event_type", "eventType"])
@pytest.mark.parametrize(
    ("request_id", "value", "kind", "stored_type"),
    [
        (CLUSTER_ID, "cluster.optimized", "cluster", "cluster.optimized"),
        (ROUTE_ID, "route", "route", "route.optimized"),
        (CLUSTER_ID, f"cluster.optimized.Example.{USER}", "cluster", f"cluster.optimized.Example.{USER}"),
    ],
)
def test_type_from_the_payload(api, services, sender, field, request_id, value, kind, stored_type):
    """A type field in the payload (type, event_type or eventType) decides the kind fetched."""
    stored = deliver(sender, services.inbox, {"request_id": request_id, field: value})
    assert (stored.event_type, stored.kind) == (stored_type, kind)
    _processed(services, stored)
    assert api.fetches == {(kind, request_id): 1}


@pytest.mark.parametrize(
    ("path", "request_id", "kind", "stored_type"),
    [
        ("/webhook/cluster", CLUSTER_ID, "cluster", "cluster.optimized"),
        ("/webhook/route", ROUTE_ID, "route", "route.optimized"),
        ("/webhook/route.optimized", ROUTE_ID, "route", "route.optimized"),
        (f"/webhook/cluster.optimized.Example.{USER}", CLUSTER_ID, "cluster", f"cluster.optimized.Example.{USER}"),
    ],
)
def test_type_from_the_url_path(api, services, sender, path, request_id, kind, stored_type):
    """The endpoint's URL path decides the kind fetched when the payload has no type."""
    stored = deliver(sender, services.inbox, {"request_id": request_id}, path=path)
    assert (stored.event_type, stored.path_type, stored.kind) == (stored_type, stored_type, kind)
    _processed(services, stored)
    assert api.fetches == {(kind, request_id): 1}


def test_type_from_the_configured_default(environ, api):
    """WEBHOOK_DEFAULT_EVENT_TYPE decides the kind when neither payload nor path names one."""
    with services_with(environ, WEBHOOK_DEFAULT_EVENT_TYPE="cluster.optimized") as (services, sender):
        stored = deliver(sender, services.inbox, {"request_id": CLUSTER_ID})
        assert stored.event_type == "cluster.optimized"
        _processed(services, stored)
    assert api.fetches == {("cluster", CLUSTER_ID): 1}


@pytest.mark.parametrize(
    ("request_id", "fetches", "detected"),
    [
        (ROUTE_ID, [(("cluster", ROUTE_ID), 1), (("route", ROUTE_ID), 1)], "route.optimized"),
        (CLUSTER_ID, [(("cluster", CLUSTER_ID), 1)], "cluster.optimized"),
    ],
)
def test_type_from_the_api_when_nothing_names_it(api, services, sender, request_id, fetches, detected):
    """With no type anywhere the worker asks the API, cluster first, then route; the detected type is stored."""
    recorder = Recorder()
    services.registry.subscribe("*", recorder)
    stored = deliver(sender, services.inbox, {"request_id": request_id})
    assert (stored.event_type, stored.kind) == (None, None)
    row = _processed(services, stored)
    assert list(api.fetches.items()) == fetches  # in the order they were asked
    assert (row.event_type, row.kind) == (detected, detected.split(".")[0])
    [(event, _)] = recorder.calls
    assert (event.type, event.warehouse) == (detected, "Example")


def test_type_unknown_to_the_api_is_retried_as_not_found(api, services, sender):
    """An id the API knows under neither kind is retried as not found, after asking both kinds."""
    unknown = "0123456789abcdef01234567"
    stored = deliver(sender, services.inbox, {"request_id": unknown})
    assert services.processor.process(stored.id, now=datetime.now(UTC)) is Status.RETRYING
    assert "no cluster or route result" in services.inbox.get(stored.id).last_error
    assert list(api.fetches) == [("cluster", unknown), ("route", unknown)]


@pytest.mark.parametrize(
    ("payload", "path", "kind", "request_id"),
    [
        pytest.param({"type": "cluster.optimized"}, "/webhook/route", "cluster", CLUSTER_ID, id="payload-over-path"),
        pytest.param({"eventType": "cluster"}, "/webhook", "cluster", CLUSTER_ID, id="payload-over-default"),
        pytest.param({}, "/webhook/cluster", "cluster", CLUSTER_ID, id="path-over-default"),
        pytest.param({}, "/webhook", "route", ROUTE_ID, id="default"),
    ],
)
def test_type_priority(environ, api, payload, path, kind, request_id):
    """Payload wins over the URL path, and the path over WEBHOOK_DEFAULT_EVENT_TYPE (here route.optimized)."""
    with services_with(environ, WEBHOOK_DEFAULT_EVENT_TYPE="route.optimized") as (services, sender):
        stored = deliver(sender, services.inbox, {"request_id": request_id, **payload}, path=path)
        assert stored.kind == kind
        _processed(services, stored)
    assert api.fetches == {(kind, request_id): 1}


def test_a_duplicate_found_by_asking_the_api_keeps_its_detected_type(api, services, sender):
    """An untyped second message for a processed optimization is a duplicate and still records the kind the API told."""
    first = deliver(sender, services.inbox, {"request_id": CLUSTER_ID}, path="/webhook/cluster")
    assert drain(services) == 1
    second = deliver(sender, services.inbox, {"request_id": CLUSTER_ID})
    assert drain(services) == 1
    row = services.inbox.get(second.id)
    assert row.status is Status.DUPLICATE
    assert first.message_id in row.last_error
    assert (row.kind, row.event_type) == ("cluster", "cluster.optimized")


def test_a_database_error_while_claiming_leaves_the_worker_alive(api, services, sender):
    """When the inbox cannot be written, process() logs and returns; the event stays due for the reconciler."""
    stored = route_event(services, sender)
    with services.inbox.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE inbox_events RENAME TO inbox_events_away")
    assert services.processor.process(stored.id) is None
    with services.inbox.engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE inbox_events_away RENAME TO inbox_events")
    assert services.processor.process(stored.id) is Status.DONE


# Giving work back at shutdown ----------------------------------------------------------------------


class Gate:
    """A handler that blocks its first call until told to go on."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.go_on = threading.Event()
        self.calls = 0

    def __call__(self, event, result) -> None:
        self.calls += 1
        if self.calls == 1:
            self.entered.set()
            self.go_on.wait(10)


def test_release_active_gives_back_an_unfinished_claim(services, sender, api):
    """release_active gives back a claim in progress, due now and uncounted; its late finish is void; done once."""
    gate = Gate()
    services.registry.subscribe("*", gate)
    event = route_event(services, sender)
    outcome: list[Status | None] = []
    worker = threading.Thread(target=lambda: outcome.append(services.processor.process(event.id)))
    worker.start()
    try:
        assert gate.entered.wait(10)
        released_at = datetime.now(UTC)
        assert services.processor.release_active(now=released_at) == 1
    finally:
        gate.go_on.set()
        worker.join(10)
    assert not worker.is_alive()

    row = services.inbox.get(event.id)
    assert (row.status, row.attempts, row.claim_token, row.lease_until) == (Status.RETRYING, 0, None, None)
    assert row.next_attempt_at == released_at
    assert story(services, event.id) == [("claimed", 1, None), ("released", 1, RELEASED)]
    assert outcome == [None]  # the late finish found its claim gone
    assert services.inbox.due(now=released_at) == [event.id]
    assert services.processor.release_active() == 0

    assert services.processor.process(event.id, now=released_at) is Status.DONE
    assert services.processor.process(event.id, now=released_at + SECOND) is None
    row = services.inbox.get(event.id)
    assert (row.status, row.attempts) == (Status.DONE, 1)
    assert [h[0] for h in story(services, event.id)] == ["claimed", "released", "claimed", "done"]
    assert gate.calls == 2
    assert api.fetches[("route", ROUTE_ID)] == 2
