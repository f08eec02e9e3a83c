"""Replay and recover (recovery.py) through the real command line: `replay` puts named events back whatever
their status, `recover` replays the failed events of a time window (by status and type), and the times it
reads; against real SQLite files, the real queue and the stand-in API."""

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from support.cli import run_cli
from support.deliveries import deliver, drain, route_event, send_ignored, send_invalid, services_with
from support.outcomes import REFUSED_KEY, received_ago, result_files, snapshot, status_of, story
from support.standin import API_KEY, CLUSTER_ID, ROUTE_ID, ROUTE_SUMMARY, UNKNOWN_ID, standin_api

import defaults
import operations
from inbox import Status
from services import Services
from signatures import new_secret

ROUTE_2 = "2" * 24
ROUTE_3 = "3" * 24
ROUTE_4 = "4" * 24
USER = "673f48095739843f4de65ec9"
WRONG_KEY = "wrong-key-" + "w" * 24


# replay ---------------------------------------------------------------------------------------------


def test_replay_received_queues_it_again_and_it_runs_once(environ, services, sender, api):
    """A `received` event is queued again; the two queued tasks process it once, and history shows the replay."""
    event = route_event(services, sender)
    assert services.queue.pending() == 1

    result = run_cli(environ, "replay", event.message_id)

    assert result.exit_code == 0, result.output
    assert result.stdout == f"{event.message_id}: received → received and queued\n"
    assert services.queue.pending() == 2
    assert story(services, event.id) == [("replayed", None, "replayed as received")]
    drain(services)
    row = services.inbox.get(event.id)
    assert (row.status, row.attempts) == (Status.DONE, 1)
    assert api.fetches[("route", ROUTE_ID)] == 1


def test_replay_skips_an_event_a_worker_holds(environ, services, sender):
    """A `processing` event whose lease is live is skipped with exit code 1 and left exactly as it was."""
    event = route_event(services, sender)
    assert services.inbox.claim(event.id, 60) is not None
    before = snapshot(services)

    result = run_cli(environ, "replay", event.message_id)

    assert result.exit_code == 1
    assert result.stdout == f"{event.message_id}: skipped, a worker is processing it right now\n"
    assert snapshot(services) == before
    assert services.queue.pending() == 1  # only the delivery's own task


def test_replay_takes_back_an_expired_lease(environ, services, sender, api):
    """A `processing` event whose lease ran out is replayed: attempts from zero, the old claim cannot finish it."""
    event = route_event(services, sender)
    stale = services.inbox.claim(event.id, 60, now=datetime.now(UTC) - timedelta(hours=1))
    assert stale is not None

    result = run_cli(environ, "replay", event.message_id)

    assert result.exit_code == 0, result.output
    assert result.stdout == f"{event.message_id}: processing → received and queued\n"
    row = services.inbox.get(event.id)
    assert (row.status, row.attempts, row.claim_token, row.lease_until) == (Status.RECEIVED, 0, None, None)
    assert not services.inbox.finish(stale, Status.DONE)  # the dead worker's claim is gone
    drain(services)
    row = services.inbox.get(event.id)
    assert (row.status, row.attempts) == (Status.DONE, 1)
    assert [h[0] for h in story(services, event.id)] == ["claimed", "replayed", "claimed", "done"]


def test_replay_retrying_starts_afresh(environ, services, sender, api):
    """A `retrying` event is queued at once with attempts from zero and no error, and is done once the result exists."""
    event = route_event(services, sender, UNKNOWN_ID)
    drain(services)
    assert (status_of(services, event.message_id), services.inbox.get(event.id).attempts) == (Status.RETRYING, 1)
    api.add_result("route", UNKNOWN_ID)

    result = run_cli(environ, "replay", event.message_id)

    assert result.exit_code == 0, result.output
    assert result.stdout == f"{event.message_id}: retrying → received and queued\n"
    row = services.inbox.get(event.id)
    assert (row.status, row.attempts, row.last_error) == (Status.RECEIVED, 0, None)
    drain(services)
    row = services.inbox.get(event.id)
    assert (row.status, row.attempts, row.last_error) == (Status.DONE, 1, None)


def test_replay_done_runs_the_handlers_again_into_the_same_file(environ, services, sender, settings, api):
    """A `done` event is processed again: fetched and handled a second time, the results folder keeps one file."""
    calls = []
    services.registry.subscribe("*", lambda event, result: calls.append(event.message_id))
    event = route_event(services, sender)
    drain(services)
    assert status_of(services, event.message_id) is Status.DONE

    result = run_cli(environ, "replay", event.message_id)

    assert result.exit_code == 0, result.output
    assert result.stdout == f"{event.message_id}: done → received and queued\n"
    drain(services)
    row = services.inbox.get(event.id)
    assert (row.status, row.attempts, row.result_summary) == (Status.DONE, 1, ROUTE_SUMMARY)
    assert calls == [event.message_id, event.message_id]
    assert api.fetches[("route", ROUTE_ID)] == 2
    assert result_files(settings) == [f"route/{ROUTE_ID}.json"]
    assert story(services, event.id) == [
        ("claimed", 1, None),
        ("done", 1, None),
        ("replayed", None, "replayed as received"),
        ("claimed", 1, None),
        ("done", 1, None),
    ]


@pytest.mark.parametrize(
    ("send", "status", "error"),
    [
        (send_ignored, Status.IGNORED, "'message.attempt.exhausted' is not an OptiPick optimization event type"),
        (send_invalid, Status.INVALID, "no request_id"),
    ],
    ids=["ignored", "invalid"],
)
def test_replay_of_an_unprocessable_event_resolves_it_the_same(environ, services, sender, api, send, status, error):
    """An `ignored` or `invalid` event is resolved again and stays as it was, not queued; history shows the replay."""
    event = send(sender, services)
    assert event.status is status

    result = run_cli(environ, "replay", event.message_id)

    assert result.exit_code == 0, result.output
    assert result.stdout == f"{event.message_id}: {status} → {status}\n"
    row = services.inbox.get(event.id)
    assert (row.status, row.attempts, row.last_error, row.next_attempt_at) == (status, 0, error, None)
    assert story(services, event.id) == [("replayed", None, f"replayed as {status}")]
    assert services.queue.pending() == 0
    assert api.total_fetches() == 0


def test_replay_dead_is_done_once_the_api_works(environ, services, sender, api):
    """A `dead` event (the API refused it) is received and queued again, then done now that the API answers."""
    api.fail_first("route", ROUTE_ID, (403, {}, {"message": "Forbidden"}))
    event = route_event(services, sender)
    drain(services)
    assert status_of(services, event.message_id) is Status.DEAD

    result = run_cli(environ, "replay", event.message_id)

    assert result.exit_code == 0, result.output
    assert result.stdout == f"{event.message_id}: dead → received and queued\n"
    assert services.queue.pending() == 1
    drain(services)
    row = services.inbox.get(event.id)
    assert (row.status, row.attempts, row.last_error, row.result_summary) == (Status.DONE, 1, None, ROUTE_SUMMARY)


def test_replay_duplicate_stays_duplicate_while_the_holder_lives(environ, services, sender, api):
    """A `duplicate` event processed again ends `duplicate` again, naming the live holder, without fetching."""
    holder = route_event(services, sender)
    drain(services)
    copy = route_event(services, sender)
    drain(services)
    assert status_of(services, copy.message_id) is Status.DUPLICATE

    result = run_cli(environ, "replay", copy.message_id)

    assert result.exit_code == 0, result.output
    assert result.stdout == f"{copy.message_id}: duplicate → received and queued\n"
    assert services.inbox.get(copy.id).attempts == 0
    drain(services)
    row = services.inbox.get(copy.id)
    assert (row.status, row.attempts) == (Status.DUPLICATE, 1)
    assert row.last_error == f"route {ROUTE_ID} is handled by {holder.message_id}"
    assert status_of(services, holder.message_id) is Status.DONE
    assert api.fetches[("route", ROUTE_ID)] == 1


def test_replay_unknown_id_exits_1_after_replaying_the_others(environ, services, sender):
    """An unknown message id prints "no such event" and makes the exit code 1; the known ids are still replayed."""
    event = send_ignored(sender, services)
    result = run_cli(environ, "replay", "msg_nope", event.message_id)
    assert result.exit_code == 1
    assert result.stdout == f"msg_nope: no such event\n{event.message_id}: ignored → ignored\n"
    assert [h[0] for h in story(services, event.id)] == ["replayed"]

    alone = run_cli(environ, "replay", "msg_nope")
    assert (alone.exit_code, alone.stdout) == (1, "msg_nope: no such event\n")


def test_replay_needs_a_message_id(environ):
    """`replay` without a message id is a usage error (exit code 2)."""
    assert run_cli(environ, "replay").exit_code == 2


def test_replay_resolves_the_type_with_todays_default(environ, services, sender, api):
    """A replayed untyped event takes today's WEBHOOK_DEFAULT_EVENT_TYPE and is fetched without asking its kind."""
    event = deliver(sender, services.inbox, {"request_id": ROUTE_2})
    now = datetime.now(UTC)
    for _ in range(defaults.NOT_FOUND_MAX_ATTEMPTS):
        services.processor.process(event.id, now=now)
        now += timedelta(days=1)
    row = services.inbox.get(event.id)
    assert (row.status, row.event_type, row.attempts) == (Status.DEAD, None, defaults.NOT_FOUND_MAX_ATTEMPTS)
    detections = api.fetches[("cluster", ROUTE_2)]
    assert detections == defaults.NOT_FOUND_MAX_ATTEMPTS
    api.add_result("route", ROUTE_2)

    result = run_cli(environ, "replay", event.message_id, WEBHOOK_DEFAULT_EVENT_TYPE="route.optimized")

    assert result.exit_code == 0, result.output
    row = services.inbox.get(event.id)
    assert (row.status, row.event_type, row.kind, row.attempts) == (Status.RECEIVED, "route.optimized", "route", 0)
    with services_with(environ, WEBHOOK_DEFAULT_EVENT_TYPE="route.optimized") as (configured, _):
        drain(configured)
    row = services.inbox.get(event.id)
    assert (row.status, row.attempts, row.event_type) == (Status.DONE, 1, "route.optimized")
    assert api.fetches[("cluster", ROUTE_2)] == detections  # no detection this time


def test_recover_after_fixing_a_refused_key(environ, services, api):
    """Events dead because OPTIPICK_API_KEY was wrong are recovered with the right key and end `done`."""
    with services_with(environ, OPTIPICK_API_KEY=WRONG_KEY) as (wrong, wrong_sender):
        route = route_event(wrong, wrong_sender)
        untyped = deliver(wrong_sender, wrong.inbox, {"request_id": CLUSTER_ID})
        drain(wrong)
    for event in (route, untyped):
        row = services.inbox.get(event.id)
        assert row.status is Status.DEAD
        assert row.last_error.startswith(REFUSED_KEY)

    result = run_cli(environ, "recover", "--since", "1h")

    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "2 event(s) match",
        f"{route.message_id}: dead → received and queued",
        f"{untyped.message_id}: dead → received and queued",
    ]
    drain(services)
    assert services.inbox.get(route.id).status is Status.DONE
    row = services.inbox.get(untyped.id)
    assert (row.status, row.event_type) == (Status.DONE, "cluster.optimized")
    assert WRONG_KEY not in result.output
    assert API_KEY not in result.output


# recover --------------------------------------------------------------------------------------------

# What seed_failures stores: name → (received how long ago, status, type as listed, request id).
SEEDED = {
    "dead_route": (timedelta(hours=1), Status.DEAD, "route.optimized", ROUTE_ID),
    "dead_cluster": (timedelta(hours=26), Status.DEAD, "cluster.optimized", CLUSTER_ID),
    "dead_warehouse": (timedelta(days=5), Status.DEAD, f"route.optimized.Example.{USER}", ROUTE_2),
    "dead_untyped": (timedelta(hours=1), Status.DEAD, "type unknown", ROUTE_3),
    "retrying": (timedelta(hours=26), Status.RETRYING, "route.optimized", UNKNOWN_ID),
    "done": (timedelta(days=5), Status.DONE, "route.optimized", ROUTE_4),
    "ignored": (timedelta(hours=1), Status.IGNORED, "message.attempt.exhausted", ROUTE_ID),
    "invalid": (timedelta(hours=1), Status.INVALID, "type unknown", "-"),
}


def seed_failures(environ, services, sender, api) -> dict[str, str]:
    """Events of every kind of failure and type, received 1 h, 26 h or 5 days ago; their message ids by name."""
    for request_id in (ROUTE_2, ROUTE_3, ROUTE_4):
        api.add_result("route", request_id)
    ids = {}
    with services_with(environ, OPTIPICK_API_KEY=WRONG_KEY) as (wrong, wrong_sender):
        ids["dead_route"] = route_event(wrong, wrong_sender).message_id
        ids["dead_cluster"] = deliver(
            wrong_sender, wrong.inbox, {"request_id": CLUSTER_ID}, "/webhook/cluster"
        ).message_id
        ids["dead_warehouse"] = deliver(
            wrong_sender, wrong.inbox, {"request_id": ROUTE_2}, f"/webhook/route.optimized.Example.{USER}"
        ).message_id
        ids["dead_untyped"] = deliver(wrong_sender, wrong.inbox, {"request_id": ROUTE_3}).message_id
        drain(wrong)
    ids["retrying"] = route_event(services, sender, UNKNOWN_ID).message_id
    ids["done"] = route_event(services, sender, ROUTE_4).message_id
    ids["ignored"] = send_ignored(sender, services).message_id
    ids["invalid"] = send_invalid(sender, services).message_id
    drain(services)
    assert {name: status_of(services, m) for name, m in ids.items()} == {n: v[1] for n, v in SEEDED.items()}
    assert services.inbox.by_message_id(ids["dead_untyped"]).event_type is None
    assert services.queue.pending() == 0
    for name, (age, *_) in SEEDED.items():
        received_ago(services, ids[name], age)
    return ids


@pytest.fixture
def failed(environ, services, sender, api) -> dict[str, str]:
    return seed_failures(environ, services, sender, api)


@pytest.fixture(scope="module")
def shared_failed(tmp_path_factory) -> Iterator[tuple[dict[str, str], Services, dict[str, str]]]:
    """The same events in an inbox of their own, seeded once for the read-only (--dry-run) cases:
    its environment, services and the message ids by name."""
    tmp_path = tmp_path_factory.mktemp("shared")
    api = standin_api()
    with api.serve():
        environ = {
            "WEBHOOK_SECRET": new_secret(),
            "OPTIPICK_API_KEY": API_KEY,
            "OPTIPICK_API_URL": api.url,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'inbox.db'}",
            "QUEUE_URL": f"sqlite:///{tmp_path / 'queue.db'}",
            "RESULTS_DIR": str(tmp_path / "results"),
        }
        with services_with(environ) as (services, sender):
            yield environ, services, seed_failures(environ, services, sender, api)


def iso(age: timedelta, zone: timezone = UTC) -> str:
    return (datetime.now(UTC) - age).astimezone(zone).isoformat()


def naive(age: timedelta) -> str:
    return (datetime.now(UTC) - age).replace(tzinfo=None).isoformat(timespec="minutes")


def day(age: timedelta) -> str:
    return (datetime.now(UTC) - age).date().isoformat()


H, D = timedelta(hours=1), timedelta(days=1)
ALL_DEAD = ["dead_route", "dead_cluster", "dead_warehouse", "dead_untyped"]

RECOVER_CASES = [
    # Times: ages, ISO datetimes with a zone (any zone), without one (UTC), and dates (midnight UTC).
    pytest.param(lambda: ["--since", "2h"], ["dead_route", "dead_untyped"], id="age-hours"),
    pytest.param(lambda: ["--since", "3d"], ["dead_route", "dead_cluster", "dead_untyped"], id="age-days"),
    pytest.param(lambda: ["--since", "1w"], ALL_DEAD, id="age-week"),
    pytest.param(lambda: ["--since", "1w", "--until", "2h"], ["dead_cluster", "dead_warehouse"], id="until-age"),
    pytest.param(lambda: ["--since", "3d", "--until", "2h"], ["dead_cluster"], id="window-ages"),
    pytest.param(lambda: ["--since", iso(30 * H)], ["dead_route", "dead_cluster", "dead_untyped"], id="iso-utc"),
    pytest.param(
        lambda: ["--since", iso(30 * H, timezone(timedelta(hours=5, minutes=30)))],
        ["dead_route", "dead_cluster", "dead_untyped"],
        id="iso-other-zone",
    ),
    pytest.param(
        lambda: ["--since", iso(30 * H, timezone(timedelta(hours=-8))), "--until", iso(2 * H).replace("+00:00", "Z")],
        ["dead_cluster"],
        id="iso-window-z",
    ),
    pytest.param(lambda: ["--since", naive(30 * H)], ["dead_route", "dead_cluster", "dead_untyped"], id="iso-naive"),
    pytest.param(lambda: ["--since", naive(6 * D), "--until", naive(2 * D)], ["dead_warehouse"], id="naive-window"),
    pytest.param(lambda: ["--since", day(3 * D)], ["dead_route", "dead_cluster", "dead_untyped"], id="date"),
    pytest.param(lambda: ["--since", day(7 * D), "--until", day(2 * D)], ["dead_warehouse"], id="date-window"),
    pytest.param(lambda: ["--since", "1m"], [], id="nothing-that-recent"),
    # Statuses: dead by default; any list of statuses.
    pytest.param(lambda: ["--since", "1w", "--status", "retrying"], ["retrying"], id="status-retrying"),
    pytest.param(lambda: ["--since", "1w", "--status", "done"], ["done"], id="status-done"),
    pytest.param(
        lambda: ["--since", "1w", "--status", "dead,retrying"],
        ["dead_route", "dead_cluster", "dead_warehouse", "dead_untyped", "retrying"],
        id="status-list",
    ),
    pytest.param(lambda: ["--since", "1w", "--status", "ignored, invalid"], ["ignored", "invalid"], id="status-spaced"),
    # Types: shell patterns; an event of unknown type matches only `*`.
    pytest.param(lambda: ["--since", "1w", "--type", "route.optimized"], ["dead_route"], id="type-exact"),
    pytest.param(
        lambda: ["--since", "1w", "--type", "route.optimized*"], ["dead_route", "dead_warehouse"], id="type-prefix"
    ),
    pytest.param(lambda: ["--since", "1w", "--type", "cluster.*"], ["dead_cluster"], id="type-cluster"),
    pytest.param(lambda: ["--since", "1w", "--type", "*.Example.*"], ["dead_warehouse"], id="type-warehouse"),
    pytest.param(lambda: ["--since", "1w", "--type", "*"], ALL_DEAD, id="type-any-includes-unknown"),
    # Combined.
    pytest.param(
        lambda: ["--since", "3d", "--until", "2h", "--status", "dead,retrying", "--type", "route*"],
        ["retrying"],
        id="all-filters",
    ),
    pytest.param(
        lambda: ["--since", "1w", "--status", "dead,done", "--type", "route.optimized*"],
        ["dead_route", "dead_warehouse", "done"],
        id="status-and-type",
    ),
]


@pytest.mark.parametrize(("args", "expected"), RECOVER_CASES)
def test_recover_dry_run_lists_the_matches_and_changes_nothing(shared_failed, args, expected):
    """--since, --until, --status and --type select the right events, alone and together; --dry-run only lists them."""
    environ, services, failed = shared_failed
    before = snapshot(services)

    result = run_cli(environ, "recover", *args(), "--dry-run")

    assert result.exit_code == 0, result.output
    head, *lines = result.stdout.splitlines()
    assert head == f"{len(expected)} event(s) match (dry run: nothing replayed)"
    assert lines == [
        f"{failed[name]}  {status}  {event_type}  request {request_id}"
        for name in expected
        for _, status, event_type, request_id in [SEEDED[name]]
    ]
    assert snapshot(services) == before
    assert services.queue.pending() == 0


# Replaying for real: a few cases of the table above, each with a different mix of statuses.
REPLAY_CASES = [
    case
    for case in RECOVER_CASES
    if case.id in {"age-hours", "status-list", "status-spaced", "all-filters", "status-and-type"}
]


@pytest.mark.parametrize(("args", "expected"), REPLAY_CASES)
def test_recover_replays_exactly_the_matches(environ, services, failed, args, expected):
    """Without --dry-run, recover replays exactly the matching events, prints the count, and queues the processable."""
    before = snapshot(services)

    result = run_cli(environ, "recover", *args())

    assert result.exit_code == 0, result.output
    head, *lines = result.stdout.splitlines()
    assert head == f"{len(expected)} event(s) match"
    assert [line.split(":")[0] for line in lines] == [failed[name] for name in expected]
    queued = 0
    for msg_id, (old, old_history) in before.items():
        new = services.inbox.by_message_id(msg_id)
        history = services.inbox.history_of(new.id)
        if msg_id not in {failed[name] for name in expected}:
            assert (new, history) == (old, old_history)
            continue
        assert new.attempts == 0
        assert history[: len(old_history)] == old_history
        assert [(h.action, h.error) for h in history[len(old_history) :]] == [("replayed", f"replayed as {new.status}")]
        assert f"{msg_id}: {old.status} → {new.status}" in lines[[line.split(":")[0] for line in lines].index(msg_id)]
        queued += new.status is Status.RECEIVED
    assert services.queue.pending() == queued


def test_recover_dead_events_end_done_once_the_api_works(environ, services, failed, api):
    """Recovering the dead events of the last week with the right key processes every one of them to `done`."""
    result = run_cli(environ, "recover", "--since", "1w")
    assert result.stdout.splitlines()[0] == "4 event(s) match"
    drain(services)
    assert {name: status_of(services, failed[name]) for name in ALL_DEAD} == dict.fromkeys(ALL_DEAD, Status.DONE)
    assert services.inbox.by_message_id(failed["dead_untyped"]).event_type == "route.optimized"  # found by the API
    assert status_of(services, failed["retrying"]) is Status.RETRYING


@pytest.mark.parametrize(
    "args",
    [
        ["--since", "yesterday"],
        ["--since", "2h ago"],
        ["--since", "2y"],
        ["--since", "2026-13-01"],
        ["--since", "2h", "--until", "soon"],
        ["--since", "2h", "--status", "finished"],
        ["--until", "2h"],
    ],
    ids=["word", "age-with-words", "unknown-unit", "bad-month", "bad-until", "bad-status", "no-since"],
)
def test_recover_rejects_bad_options(environ, services, sender, api, args):
    """A time that is not a date, datetime or age, an unknown status, or no --since is a usage error (exit 2)."""
    api.fail_first("route", ROUTE_ID, (403, {}, {"message": "Forbidden"}))
    route_event(services, sender)
    drain(services)
    before = snapshot(services)
    assert [event.status for event, _ in before.values()] == [Status.DEAD]
    result = run_cli(environ, "recover", *args)
    assert result.exit_code == 2
    assert "Usage:" in result.stderr
    assert snapshot(services) == before


NOW = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-28", datetime(2026, 11, 28, tzinfo=UTC)),
        ("2026-11-28T14:30", datetime(2026, 11, 28, 14, 30, tzinfo=UTC)),
        ("2026-11-28 14:30:15", datetime(2026, 11, 28, 14, 30, 15, tzinfo=UTC)),
        ("2026-11-28T14:30+02:00", datetime(2026, 11, 28, 12, 30, tzinfo=UTC)),
        ("2026-11-28T01:30-05:00", datetime(2026, 11, 28, 6, 30, tzinfo=UTC)),
        ("2026-11-28T14:30Z", datetime(2026, 11, 28, 14, 30, tzinfo=UTC)),
        ("45s", NOW - timedelta(seconds=45)),
        ("30m", NOW - timedelta(minutes=30)),
        ("6h", NOW - timedelta(hours=6)),
        ("2d", NOW - timedelta(days=2)),
        ("1w", NOW - timedelta(weeks=1)),
        ("2 h", NOW - timedelta(hours=2)),
        ("  3d\n", NOW - timedelta(days=3)),
    ],
)
def test_parse_time_reads_dates_datetimes_and_ages(text, expected):
    """parse_time reads ISO dates and datetimes (UTC unless zoned, converted to UTC) and ages before `now`."""
    parsed = operations.parse_time(text, now=NOW)
    assert parsed == expected
    assert parsed.utcoffset() == timedelta(0)


def test_parse_time_reads_zoneless_times_as_utc_whatever_the_local_zone(monkeypatch):
    """A date or time without a zone means UTC even on a machine whose local zone is not UTC."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        assert operations.parse_time("2026-11-28T14:30") == datetime(2026, 11, 28, 14, 30, tzinfo=UTC)
        assert operations.parse_time("2026-11-28") == datetime(2026, 11, 28, tzinfo=UTC)
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.parametrize("text", ["", "yesterday", "2h ago", "-2h", "1.5h", "2y", "h", "2026-13-01", "28/11/2026"])
def test_parse_time_rejects_what_is_not_a_time(text):
    """Anything else is a ValueError that quotes the text and shows the accepted forms."""
    with pytest.raises(ValueError, match="is not a time: use 2026-11-28") as raised:
        operations.parse_time(text, now=NOW)
    assert repr(text.strip()) in str(raised.value)


def test_parse_time_counts_ages_from_the_clock():
    """Without `now`, an age counts back from the current time."""
    before = datetime.now(UTC)
    parsed = operations.parse_time("2h")
    assert before - timedelta(hours=2) <= parsed <= datetime.now(UTC) - timedelta(hours=2)
