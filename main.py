"""Command line. `python main.py` runs the receiver and an embedded worker in one process.

python main.py                    web server on HOST:PORT plus a worker: the one command to start
python main.py web                the web side alone (production, beside `python main.py worker`)
python main.py worker             a worker alone, beside `python main.py web`
python main.py events             stored events, newest first
python main.py show MSG_ID        one event in full, with its history
python main.py replay MSG_ID…     process stored events again
python main.py recover --since T  replay every failed event since T
python main.py prune              delete old finished events
python main.py check              try every part of the configuration
python main.py send-test          a delivery signed like Svix's, sent to the running receiver
python main.py demo               the whole flow on this machine, no account needed
"""

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import click
import requests
from sqlalchemy.exc import SQLAlchemyError

import defaults
import operations
import reports
from checks import run_checks
from clock import utcnow
from config import Settings, configure_logging, load_settings
from errors import ConfigError
from http_server import create_server
from inbox import RECOVERABLE_STATUSES, Inbox, Status, StoredEvent, describe_error
from intake import MESSAGE_ID_PATTERN
from lifecycle import StopSignals, run_until_stopped, serve_until_stopped
from services import Services
from signatures import new_message_id, signed_headers
from webapp import create_app
from work_queue import Enqueue, WorkQueue, create_huey

STATUS_NAMES = [s.value for s in Status]
# The most events `events --limit` lists: more than a terminal shows, and far below what overflows.
MOST_EVENTS = 1_000_000


def load_or_exit() -> Settings:
    try:
        settings = load_settings()
    except ConfigError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(2)
    configure_logging(settings.log_level)
    return settings


@contextmanager
def open_services() -> Iterator[Services]:
    """The configured services, closed afterwards; a configuration error ends the command."""
    settings = load_or_exit()
    try:
        services = Services.build(settings)
    except ConfigError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(2)
    except SQLAlchemyError as exc:  # the database is down, or refuses the connection
        click.echo(f"cannot open the inbox database (DATABASE_URL): {type(exc).__name__}", err=True)
        sys.exit(2)
    try:
        yield services
    finally:
        services.close()


@contextmanager
def open_inbox() -> Iterator[tuple[Settings, Inbox]]:
    """The configured inbox alone, closed afterwards: what the commands on stored events need (the
    queue is disposable, and may be the broken part). A configuration error ends the command."""
    settings = load_or_exit()
    try:
        inbox = Inbox.open(settings.database_url)
    except ConfigError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(2)
    except SQLAlchemyError as exc:
        click.echo(f"cannot open the inbox database (DATABASE_URL): {describe_error(exc)}", err=True)
        sys.exit(2)
    try:
        yield settings, inbox
    finally:
        inbox.close()


@contextmanager
def open_queue(settings: Settings) -> Iterator[Enqueue | None]:
    """How to enqueue, or None (with one line on stderr) when the queue cannot be opened: events then
    stay due in the inbox, for a worker's reconciler."""
    queue: WorkQueue | None = None
    try:
        queue = WorkQueue(create_huey(settings.queue_url))
    except Exception as exc:  # each queue backend raises its own errors
        click.echo(
            f"the queue cannot be opened (QUEUE_URL: {describe_error(exc)}): events put back are left "
            "due, and a running worker's reconciler enqueues them within a couple of minutes",
            err=True,
        )
    if queue is None:
        yield None
        return
    try:
        yield queue.enqueue
    finally:
        queue.close()


def message_ids(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> tuple[str, ...]:
    """Arguments that must be message ids, as intake stores them: anything else cannot be stored."""
    for value in values:
        if not MESSAGE_ID_PATTERN.fullmatch(value):
            raise click.BadParameter(f"{value[:80]!r} is not a message id: letters, digits, _ and -, as msg_2Yb…")
    return values


@click.group(invoke_without_command=True)
@click.pass_context
def cli(ctx: click.Context) -> None:
    """OptiPick webhook receiver. Without a command: serve webhooks and process them."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(serve)


@cli.command()
def serve() -> None:
    """Serve POST /webhook and process deliveries in the same process."""
    stop = StopSignals()
    with open_services() as services:
        server = create_server(create_app(services=services), services.settings)
        run_until_stopped(services, stop, server)


@cli.command()
def web() -> None:
    """Serve POST /webhook only, on HOST:PORT (production: beside `python main.py worker`)."""
    stop = StopSignals()
    with open_services() as services:
        server = create_server(create_app(services=services), services.settings)
        serve_until_stopped(stop, server)


@cli.command()
def worker() -> None:
    """Process deliveries only (beside `python main.py web`)."""
    stop = StopSignals()
    with open_services() as services:
        run_until_stopped(services, stop)


@cli.command()
@click.option("--status", type=click.Choice(STATUS_NAMES), help="Only events in this status.")
@click.option(
    "--limit", type=click.IntRange(min=1, max=MOST_EVENTS), default=50, show_default=True, help="At most this many."
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array instead of a table.")
def events(status: str | None, limit: int, as_json: bool) -> None:
    """List stored events, newest first."""
    with open_inbox() as (_settings, inbox):
        rows = inbox.latest(Status(status) if status else None, limit)
    if as_json:
        click.echo(json.dumps([reports.event_fields(row) for row in rows], indent=2))
    elif not rows:
        click.echo("no events" + (f" with status {status}" if status else ""))
    else:
        click.echo("\n".join(reports.events_table(rows)))


@cli.command()
@click.argument("message_id", callback=lambda ctx, param, value: message_ids(ctx, param, (value,))[0])
def show(message_id: str) -> None:
    """Print one event in full: fields, history of attempts, result summary, headers and payload."""
    with open_inbox() as (_settings, inbox):
        event = inbox.by_message_id(message_id)
        if event is None:
            click.echo(f"no event with message id {message_id!r}", err=True)
            sys.exit(1)
        click.echo("\n".join(reports.event_in_full(event, inbox.history_of(event.id))))


@cli.command()
@click.argument("message_ids", nargs=-1, required=True, callback=message_ids)
def replay(message_ids: tuple[str, ...]) -> None:
    """Put the named events back to be processed, whatever their status."""
    missing_or_busy = 0
    with open_inbox() as (settings, inbox), open_queue(settings) as enqueue:
        for message_id in message_ids:
            event = inbox.by_message_id(message_id)
            if event is None:
                click.echo(f"{message_id}: no such event")
                missing_or_busy += 1
                continue
            missing_or_busy += not _replay_and_say(settings, inbox, enqueue, event)
    sys.exit(1 if missing_or_busy else 0)


@cli.command()
@click.option("--since", required=True, help="Received at or after: 2026-11-28, 2026-11-28T14:30 (UTC), or 6h, 2d.")
@click.option("--until", help="Received before (same forms). Default: now.")
@click.option(
    "--status",
    "statuses",
    default=",".join(RECOVERABLE_STATUSES),
    show_default=True,
    help="Comma-separated statuses to recover.",
)
@click.option("--type", "type_pattern", help="Only event types matching this pattern, e.g. 'route.optimized*'.")
@click.option("--dry-run", is_flag=True, help="Only list what would be replayed.")
def recover(since: str, until: str | None, statuses: str, type_pattern: str | None, dry_run: bool) -> None:
    """Replay every event that failed since a time (Svix's "Recover failed messages", on this side)."""
    now = utcnow()
    start = _time_option("--since", since, now)
    end = _time_option("--until", until, now) if until else None
    if start > now:
        raise click.BadParameter(
            f"{since!r} is {_time(start)}, in the future: nothing arrived since", param_hint="'--since'"
        )
    if end is not None and end <= start:
        raise click.BadParameter(
            f"{until!r} is {_time(end)}, not after --since ({_time(start)})", param_hint="'--until'"
        )
    try:
        chosen = operations.parse_statuses(statuses)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--status'") from None
    with open_inbox() as (settings, inbox):
        found = operations.matching(inbox, start, end, chosen, type_pattern)
        click.echo(f"{len(found)} event(s) match" + (" (dry run: nothing replayed)" if dry_run else ""))
        if dry_run:
            for event in found:
                click.echo(reports.event_one_line(event))
            return
        with open_queue(settings) as enqueue:
            for event in found:
                _replay_and_say(settings, inbox, enqueue, event)


def _time_option(name: str, text: str, now: datetime) -> datetime:
    try:
        return operations.parse_time(text, now)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=f"'{name}'") from None


def _time(when: datetime) -> str:
    return when.isoformat(timespec="seconds")


def _replay_and_say(settings: Settings, inbox: Inbox, enqueue: Enqueue | None, event: StoredEvent) -> bool:
    outcome = operations.replay(inbox, enqueue, event, settings.default_event_type)
    if outcome.status is None:
        click.echo(f"{event.message_id}: skipped, a worker is processing it right now")
        return False
    queued = ""
    if outcome.status is Status.RECEIVED:
        queued = " and queued" if outcome.queued else ", left due for the reconciler (not queued)"
    click.echo(f"{event.message_id}: {event.status} → {outcome.status}{queued}")
    return True


@cli.command()
@click.option(
    "--older-than",
    "days",
    type=click.IntRange(min=defaults.PRUNE_MINIMUM_DAYS, max=defaults.MAX_AGE_DAYS),
    default=defaults.PRUNE_DEFAULT_DAYS,
    show_default=True,
    help="Days since the event was received.",
)
@click.option("--include-failed", is_flag=True, help="Also delete dead and invalid events.")
def prune(days: int, include_failed: bool) -> None:
    """Delete finished events (done, ignored, duplicate) received more than DAYS ago."""
    with open_inbox() as (_settings, inbox):
        pruned = operations.prune(inbox, days, include_failed)
    click.echo(f"pruned {pruned} event(s) older than {days} days")


@cli.command()
def check() -> None:
    """Try every part of the configuration and say what to fix; exit 0 only when all pass."""
    try:
        settings = load_settings()
    except ConfigError as exc:
        click.echo(f"FAIL  configuration: {exc}")
        sys.exit(1)
    results = run_checks(settings)
    width = max(len(result.name) for result in results)
    for result in results:
        click.echo(f"{result.label:<4}  {result.name:<{width}}  {result.detail}")
    sys.exit(0 if all(result.ok for result in results) else 1)


# What each answer to a test delivery means, for the person who sent it.
SEND_TEST_MEANINGS = {
    200: "accepted: stored and queued (watch the receiver's log for the summary)",
    400: "signed correctly, but the payload is unusable (stored as invalid)",
    401: "signature rejected: the secret differs from the receiver's WEBHOOK_SECRET, or a clock is off by over 5 min",
    404: "no such path on the receiver: use /webhook, /webhook/route, /webhook/cluster or /webhook/<event type>",
    413: "payload too large",
    415: "not sent as application/json",
    503: "the receiver could not store it; Svix would retry",
}
EXAMPLE_ROUTE_REQUEST_ID = "67d3f1a95e593173d0a1b2c4"  # the example result optipick_standin.py serves


@cli.command("send-test")
@click.option("--url", help="Where to send it. Default: http://HOST:PORT/webhook of this configuration.")
@click.option("--type", "event_type", default="route.optimized", show_default=True, help="The payload's type.")
@click.option("--request-id", default=EXAMPLE_ROUTE_REQUEST_ID, show_default=True, help="The payload's request_id.")
@click.option("--secret", help="Sign with this secret instead of WEBHOOK_SECRET.")
def send_test(url: str | None, event_type: str, request_id: str, secret: str | None) -> None:
    """Sign a test delivery exactly as Svix would and POST it to the receiver."""
    settings = load_or_exit()
    url = url or f"http://{settings.host}:{settings.port}/webhook"
    message_id = new_message_id("msg_test_")
    body = json.dumps({"type": event_type, "request_id": request_id})
    headers = signed_headers(secret or settings.webhook_secrets[0], body, message_id)
    try:
        response = requests.post(url, data=body, headers=headers, timeout=15, allow_redirects=False)
    except requests.RequestException as exc:
        click.echo(f"could not reach {url}: {type(exc).__name__} (is `python main.py` running?)", err=True)
        sys.exit(1)
    click.echo(f"sent {message_id} ({event_type}, request {request_id}) to {url}")
    click.echo(f"{response.status_code}: {SEND_TEST_MEANINGS.get(response.status_code, 'unexpected answer')}")
    sys.exit(0 if response.ok else 1)


@cli.command()
def demo() -> None:
    """Show the whole flow with a local stand-in API: no account, no network, nothing kept."""
    from demo import run_demo  # only this command needs it

    sys.exit(0 if run_demo() else 1)


if __name__ == "__main__":
    cli()
