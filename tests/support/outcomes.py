"""What a test reads back once the receiver has worked (inbox rows, their history, results files), and the
errors the inbox records; and, for a test's set-up, ageing a stored event."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update

import inbox as inbox_module
from inbox import Inbox, Status, StoredEvent
from services import Services

# The start of last_error when the API refused OPTIPICK_API_KEY.
REFUSED_KEY = "the OptiPick API refused OPTIPICK_API_KEY (HTTP 403)"
# The history's error when a stopping worker gave an event back (Processor.release_active).
RELEASED = "the worker stopped before the attempt finished"


def status_of(services: Services, msg_id: str) -> Status:
    return services.inbox.by_message_id(msg_id).status


def story(services: Services, event_id: int) -> list[tuple[str, int | None, str | None]]:
    """An event's history as (action, attempt, error), oldest first."""
    return [(h.action, h.attempt, h.error) for h in services.inbox.history_of(event_id)]


def snapshot(services: Services) -> dict[str, tuple[StoredEvent, list]]:
    """Every stored event with its history, to show that a command changed nothing."""
    return {e.message_id: (e, services.inbox.history_of(e.id)) for e in services.inbox.latest(limit=1000)}


def result_files(settings) -> list[str]:
    """Every file under RESULTS_DIR, relative to it (none when the folder does not exist)."""
    root: Path = settings.results_dir
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()) if root.exists() else []


def received_ago(services: Services, msg_id: str, age: timedelta) -> None:
    """Set-up: pretend the event arrived `age` ago."""
    events = inbox_module.events
    with services.inbox.engine.begin() as conn:
        conn.execute(update(events).where(events.c.msg_id == msg_id).values(received_at=datetime.now(UTC) - age))


def holder_of(inbox: Inbox, kind: str, request_id: str) -> str | None:
    """The message id of the event that holds an optimization (its optimization_key), if any."""
    events = inbox_module.events
    with inbox.engine.connect() as conn:
        return conn.scalar(select(events.c.msg_id).where(events.c.optimization_key == f"{kind}:{request_id}"))
