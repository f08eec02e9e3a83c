"""Command line: `python main.py` runs the receiver and an embedded worker in one process.

python main.py                 web server on HOST:PORT plus a Huey consumer (the one command to start)
python main.py worker          a Huey consumer alone, beside a WSGI server such as gunicorn
python main.py events [...]    stored events, newest first
"""

import json
import logging
import sys
import uuid
from datetime import UTC, datetime

import click
import requests
from svix.webhooks import Webhook
from werkzeug.serving import make_server

from config import Settings, configure_logging, load_settings
from errors import ConfigError
from inbox import Status, StoredEvent
from lifecycle import run_until_stopped
from services import Services
from webapp import create_app

log = logging.getLogger("main")


def settings_or_exit() -> Settings:
    try:
        settings = load_settings()
    except ConfigError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(2)
    configure_logging(settings.log_level)
    return settings


def services_or_exit(settings: Settings) -> Services:
    try:
        return Services.build(settings)
    except ConfigError as exc:
        click.echo(f"configuration error: {exc}", err=True)
        sys.exit(2)


@click.group(invoke_without_command=True)
@click.pass_context
def cli(ctx: click.Context) -> None:
    """OptiPick webhook receiver. Without a command: serve webhooks and process them."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(serve)


@cli.command()
def serve() -> None:
    """Serve POST /webhook and process deliveries in the same process."""
    settings = settings_or_exit()
    services = services_or_exit(settings)
    server = make_server(settings.host, settings.port, create_app(services=services), threaded=True)
    try:
        run_until_stopped(services, server)
    finally:
        services.close()


@cli.command()
def worker() -> None:
    """Process deliveries only (run the web side under gunicorn)."""
    settings = settings_or_exit()
    services = services_or_exit(settings)
    try:
        run_until_stopped(services)
    finally:
        services.close()


@cli.command()
@click.option("--status", type=click.Choice([s.value for s in Status]), help="Only events in this status.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON array instead of a table.")
def events(status: str | None, limit: int, as_json: bool) -> None:
    """List stored events, newest first."""
    settings = settings_or_exit()
    services = services_or_exit(settings)
    try:
        rows = services.inbox.latest(Status(status) if status else None, limit)
    finally:
        services.close()
    if as_json:
        click.echo(json.dumps([event_summary(row) for row in rows], indent=2))
        return
    if not rows:
        click.echo("no events" + (f" with status {status}" if status else ""))
        return
    columns = ("received_at", "message_id", "status", "attempts", "type", "request_id", "last_error")
    table = [[_cell(event_summary(row)[name]) for name in columns] for row in rows]
    widths = [max(len(name), *(len(line[i]) for line in table)) for i, name in enumerate(columns[:-1])]
    click.echo("  ".join(name.ljust(w) for name, w in zip(columns, widths, strict=False)) + "  last_error")
    for line in table:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=False)) + "  " + line[-1])


def event_summary(event: StoredEvent) -> dict[str, object]:
    return {
        "message_id": event.msg_id,
        "type": event.event_type,
        "request_id": event.request_id,
        "status": str(event.status),
        "attempts": event.attempts,
        "last_error": event.last_error,
        "received_at": event.received_at.isoformat(timespec="seconds"),
        "updated_at": event.updated_at.isoformat(timespec="seconds"),
        "next_attempt_at": event.next_attempt_at.isoformat(timespec="seconds") if event.next_attempt_at else None,
    }


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
    settings = settings_or_exit()
    url = url or f"http://{settings.host}:{settings.port}/webhook"
    secret = secret or settings.webhook_secrets[0]
    msg_id = f"msg_test_{uuid.uuid4().hex}"
    now = datetime.now(UTC)
    body = json.dumps({"type": event_type, "request_id": request_id})
    headers = {
        "content-type": "application/json",
        "svix-id": msg_id,
        "svix-timestamp": str(int(now.timestamp())),
        "svix-signature": Webhook(secret).sign(msg_id, now, body),
    }
    try:
        response = requests.post(url, data=body, headers=headers, timeout=15, allow_redirects=False)
    except requests.RequestException as exc:
        click.echo(f"could not reach {url}: {type(exc).__name__} (is `python main.py` running?)", err=True)
        sys.exit(1)
    meaning = SEND_TEST_MEANINGS.get(response.status_code, "unexpected answer")
    click.echo(f"sent {msg_id} ({event_type}, request {request_id}) to {url}")
    click.echo(f"{response.status_code}: {meaning}")
    sys.exit(0 if response.ok else 1)


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


if __name__ == "__main__":
    cli()
