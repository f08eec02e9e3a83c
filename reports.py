"""What the command line prints about stored events and checks: tables, JSON and one event in full.

Much of what is stored came from outside (the payload and its headers, the API's texts in the errors
and the summary), so the table and `show` print every value printable: a stored value cannot drive
the terminal that shows it. The JSON output escapes such characters itself.
"""

import json
from collections.abc import Sequence
from datetime import datetime

from inbox import HistoryEntry, StoredEvent
from printable import printable

TABLE_COLUMNS = ("received_at", "message_id", "status", "attempts", "type", "request_id", "last_error")


def event_fields(event: StoredEvent) -> dict[str, object]:
    """One event as `events --json` prints it."""
    return {
        "message_id": event.message_id,
        "type": event.event_type,
        "request_id": event.request_id,
        "status": str(event.status),
        "attempts": event.attempts,
        "last_error": event.last_error,
        "received_at": _time(event.received_at),
        "updated_at": _time(event.updated_at),
        "next_attempt_at": _time(event.next_attempt_at),
    }


def events_table(events: Sequence[StoredEvent]) -> list[str]:
    """Aligned columns, the last one (the error) left free to run long."""
    rows = [[_cell(event_fields(e)[name]) for name in TABLE_COLUMNS] for e in events]
    widths = [max(len(name), *(len(row[i]) for row in rows)) for i, name in enumerate(TABLE_COLUMNS[:-1])]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1]
        for row in [list(TABLE_COLUMNS), *rows]
    ]


def event_one_line(event: StoredEvent) -> str:
    return _shown(
        f"{event.message_id}  {event.status}  {event.event_type or 'type unknown'}  request {event.request_id or '-'}"
    )


def event_in_full(event: StoredEvent, history: Sequence[HistoryEntry]) -> list[str]:
    """Everything `show` knows: fields, history, the fetched result's summary, headers and payload."""
    lines = [
        f"message id    {event.message_id}",
        f"status        {event.status} (attempts {event.attempts})",
        f"type          {event.event_type or 'unknown yet'}"
        + (f"  (URL path: {event.path_type})" if event.path_type else ""),
        f"request id    {event.request_id or '-'}",
        f"received      {_time(event.received_at)}",
        f"updated       {_time(event.updated_at)}",
    ]
    if event.next_attempt_at:
        lines.append(f"next look     {_time(event.next_attempt_at)}")
    if event.last_error:
        lines.append(f"last error    {event.last_error}")
    lines.append(f"result        {event.result_summary or '-'}")
    lines.append("history")
    lines.append(f"  {_time(event.received_at)}  received")
    for entry in history:
        attempt = f" (attempt {entry.attempt})" if entry.attempt is not None else ""
        error = f": {entry.error}" if entry.error else ""
        lines.append(f"  {_time(entry.at)}  {entry.action}{attempt}{error}")
    lines.append("headers")
    lines.extend(f"  {name}: {value}" for name, value in sorted(event.headers.items()))
    lines.append("payload")
    # Split on the indented JSON's own newlines only (splitlines would also split on the line
    # separators inside its strings, which printable shows as escapes).
    lines.extend("  " + line for line in _payload(event.body).split("\n"))
    return [_shown(line) for line in lines]


def _payload(body: bytes) -> str:
    try:
        return json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    except ValueError:
        return repr(body[:2000])


def _time(value: datetime | None) -> str | None:
    return value.isoformat(timespec="seconds") if value is not None else None


def _cell(value: object) -> str:
    return "-" if value is None else _shown(value)


def _shown(value: object) -> str:
    """A value as a line of output shows it: printable, and whole."""
    return printable(value, limit=None)
