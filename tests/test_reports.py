"""What the command line prints about stored events (reports.py): the `events` table and its JSON, and `show`'s
one event in full, for events stored and processed for real."""

import json
from datetime import UTC, datetime, timedelta

from support.cli import run_cli, run_events, table_rows
from support.deliveries import route_event
from support.standin import API_KEY, CLUSTER_ID, ROUTE_ID, ROUTE_SUMMARY, UNKNOWN_ID

import defaults
from inbox import Status
from signatures import new_message_id

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


# events -------------------------------------------------------------------------------------------


def test_events_table_lists_newest_first_with_every_column(environ, stored_events, secret):
    """The table shows one line per event, newest first, with id, status, attempts, type, request id and error."""
    result = run_events(environ)
    rows = table_rows(result.stdout)

    assert [row["message_id"] for row in rows] == stored_events[::-1]
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


def test_events_json_is_one_array_with_every_field(environ, stored_events):
    """--json prints one JSON array, newest first, each event with ids, type, status, attempts, error and times."""
    events = json.loads(run_events(environ, "--json").stdout)

    assert [e["message_id"] for e in events] == stored_events[::-1]
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


# show ---------------------------------------------------------------------------------------------


def section(lines: list[str], name: str, following: str | None) -> list[str]:
    start = lines.index(name) + 1
    return lines[start : lines.index(following)] if following else lines[start:]


def stamp(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds")


def test_show_prints_a_done_event_in_full(environ, services, sender, api, secret):
    """`show` prints a done event's fields, result summary, whole history, headers and pretty-printed payload."""
    api.fail_first("route", ROUTE_ID, (503, {}, {"message": "Service Unavailable"}))
    msg_id = new_message_id()
    response = sender.send({"request_id": ROUTE_ID, "note": "Lagerhalle Süd"}, path="/webhook/route", msg_id=msg_id)
    assert response.status_code == 200
    event = services.inbox.by_message_id(msg_id)
    first = datetime.now(UTC)
    assert services.processor.process(event.id, now=first) is Status.RETRYING
    second = first + timedelta(seconds=defaults.RETRY_DELAYS[0])
    assert services.processor.process(event.id, now=second) is Status.DONE

    result = run_cli(environ, "show", msg_id)

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:7] == [
        f"message id    {msg_id}",
        "status        done (attempts 2)",
        "type          route.optimized  (URL path: route.optimized)",
        f"request id    {ROUTE_ID}",
        f"received      {stamp(event.received_at)}",
        f"updated       {stamp(second)}",
        f"result        {ROUTE_SUMMARY}",
    ]
    assert section(lines, "history", "headers") == [
        f"  {stamp(event.received_at)}  received",
        f"  {stamp(first)}  claimed (attempt 1)",
        f"  {stamp(first)}  retrying (attempt 1): GET /optimize/route/{ROUTE_ID} answered 503",
        f"  {stamp(second)}  claimed (attempt 2)",
        f"  {stamp(second)}  done (attempt 2)",
    ]
    headers = section(lines, "headers", "payload")
    assert headers == sorted(headers)
    sent = response.request.headers
    for line in (
        "  content-type: application/json",
        f"  svix-id: {msg_id}",
        f"  svix-timestamp: {sent['svix-timestamp']}",
        f"  svix-signature: {sent['svix-signature']}",
    ):
        assert line in headers
    assert section(lines, "payload", None) == [
        "  {",
        f'    "request_id": "{ROUTE_ID}",',
        '    "note": "Lagerhalle Süd"',
        "  }",
    ]
    assert API_KEY not in result.output
    assert secret not in result.output


def test_show_prints_the_last_error_and_next_look_of_a_retrying_event(environ, services, sender, api):
    """For an event still retrying, `show` prints the last error, when it is next looked at, and no result."""
    event = route_event(services, sender, UNKNOWN_ID)
    now = datetime.now(UTC)
    assert services.processor.process(event.id, now=now) is Status.RETRYING
    error = f"GET /optimize/route/{UNKNOWN_ID} answered 404: no result for this request id (yet)"

    lines = run_cli(environ, "show", event.message_id).stdout.splitlines()

    assert "status        retrying (attempts 1)" in lines
    assert f"next look     {stamp(now + timedelta(seconds=defaults.RETRY_DELAYS[0]))}" in lines
    assert f"last error    {error}" in lines
    assert "result        -" in lines
    assert section(lines, "history", "headers")[1:] == [
        f"  {stamp(now)}  claimed (attempt 1)",
        f"  {stamp(now)}  retrying (attempt 1): {error}",
    ]


def test_show_prints_a_body_that_is_not_json_as_it_came(environ, services, sender):
    """`show` of an invalid event whose body is not JSON prints its error, type unknown and the raw bytes."""
    msg_id = new_message_id()
    assert sender.send("not json at all", msg_id=msg_id).status_code == 400

    lines = run_cli(environ, "show", msg_id).stdout.splitlines()

    assert lines[1:4] == ["status        invalid (attempts 0)", "type          unknown yet", "request id    -"]
    assert "last error    body is not JSON" in lines
    assert len(section(lines, "history", "headers")) == 1
    assert section(lines, "payload", None) == ["  b'not json at all'"]
