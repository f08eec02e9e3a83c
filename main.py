"""Command line: `python main.py` runs the receiver and an embedded worker in one process.

python main.py                 web server on HOST:PORT plus a Huey consumer (the one command to start)
python main.py worker          a Huey consumer alone, beside a WSGI server such as gunicorn
python main.py events [...]    stored events, newest first
"""

import json
import logging
import sys
import threading

import click
from werkzeug.serving import make_server

from config import Settings, load_settings
from errors import ConfigError
from inbox import Status, StoredEvent
from services import Services
from webapp import create_app

log = logging.getLogger("main")


def configure_logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)-7s %(name)s: %(message)s")
    if level != "DEBUG":
        # Huey logs every task start and finish at INFO; the processor logs each outcome already.
        logging.getLogger("huey").setLevel(logging.WARNING)


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
    app = create_app(services=services)
    server = make_server(settings.host, settings.port, app, threaded=True)
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    log.info("listening on http://%s:%d/webhook", settings.host, server.port)
    try:
        run_consumer(services)
    finally:
        server.shutdown()
        services.close()


@cli.command()
def worker() -> None:
    """Process deliveries only (run the web side under gunicorn)."""
    settings = settings_or_exit()
    services = services_or_exit(settings)
    try:
        run_consumer(services)
    finally:
        services.close()


def run_consumer(services: Services) -> None:
    """Run a Huey consumer until SIGINT (finish running tasks) or SIGTERM (stop now)."""
    # Pick up at once whatever a stopped process left: the reconciler otherwise runs once a minute.
    services.queue.reconcile_now()
    consumer = services.queue.consumer(workers=services.settings.worker_threads)
    consumer.run()


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


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


if __name__ == "__main__":
    cli()
