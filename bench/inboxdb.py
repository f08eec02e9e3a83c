"""Reading a receiver's inbox from the bench, read-only, while the receiver runs (WAL allows it).

The bench looks at the table with plain sqlite3 so that watching never changes what is measured:
no SQLAlchemy engine of the service's, no writes, no pragmas.
"""

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import datetime
from pathlib import Path


@contextmanager
def reading(path: Path) -> Iterator[sqlite3.Connection]:
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)) as conn:
        yield conn


def statuses(path: Path, msg_glob: str = "*") -> dict[str, int]:
    """Rows per status, among the messages whose svix-id matches `msg_glob`."""
    if not path.exists():
        return {}
    with reading(path) as conn:
        query = "SELECT status, count(*) FROM inbox_events WHERE msg_id GLOB ? GROUP BY status"
        return dict(conn.execute(query, (msg_glob,)).fetchall())


# What the worker leaves an event in when it is through with it.
FINAL = ("done", "ignored", "invalid", "dead", "duplicate")


def settled(path: Path, msg_glob: str = "*") -> int:
    """How many messages matching `msg_glob` are in a final status."""
    return sum(n for status, n in statuses(path, msg_glob).items() if status in FINAL)


def finish_times(path: Path, msg_glob: str) -> list[datetime]:
    """When each `done` message matching `msg_glob` was marked done (its updated_at), in order."""
    with reading(path) as conn:
        rows = conn.execute(
            "SELECT updated_at FROM inbox_events WHERE status = 'done' AND msg_id GLOB ? ORDER BY updated_at",
            (msg_glob,),
        ).fetchall()
    return [datetime.fromisoformat(value) for (value,) in rows]
