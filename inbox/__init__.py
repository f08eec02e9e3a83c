"""The inbox: the durable record of every authentic delivery and of what became of it.

    schema.py        the tables, the statuses and their groups, UTC times
    records.py       the frozen records it takes and gives (NewDelivery, StoredEvent, Claim, …)
    database.py      engines, and what differs between SQLite and PostgreSQL
    store.py         the Inbox: intake, replay, pruning, reading
    claims.py        its workers' side: claims, leases, outcomes, what is due
    group_commit.py  deliveries that arrive together share one durable commit
    writers_lock.py  SQLite's writers take turns across threads and processes

Callers import from here: `from inbox import Inbox, Status`.
"""

from inbox.database import Database, PostgresDatabase, SqliteDatabase, describe_error, open_database
from inbox.records import (
    Added,
    Claim,
    ClaimLost,
    HeldBy,
    HistoryEntry,
    NewDelivery,
    Reservation,
    Reserved,
    StoredEvent,
)
from inbox.schema import (
    FAILED_STATUSES,
    FINAL_STATUSES,
    FINISHED_STATUSES,
    RECOVERABLE_STATUSES,
    SCHEMA_VERSION,
    UNFINISHED_STATUSES,
    Status,
    events,
    history,
    metadata,
)
from inbox.store import Inbox

__all__ = [
    "FAILED_STATUSES",
    "FINAL_STATUSES",
    "FINISHED_STATUSES",
    "RECOVERABLE_STATUSES",
    "SCHEMA_VERSION",
    "UNFINISHED_STATUSES",
    "Added",
    "Claim",
    "ClaimLost",
    "Database",
    "HeldBy",
    "HistoryEntry",
    "Inbox",
    "NewDelivery",
    "PostgresDatabase",
    "Reservation",
    "Reserved",
    "SqliteDatabase",
    "Status",
    "StoredEvent",
    "describe_error",
    "events",
    "history",
    "metadata",
    "open_database",
]
