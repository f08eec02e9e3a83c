"""What the inbox stores: its tables, the statuses an event moves through and their groups, and UTC times.

Status flow: received → processing → done | retrying (→ processing …) | dead | duplicate.
Set at intake: received, ignored (not an OptiPick optimization type), invalid (authentic but unusable).
Every worker-side change also appends a row to `inbox_history` (claimed, done, retrying, dead,
duplicate, released, replayed), in the same transaction, so `python main.py show` can tell the story.
"""

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import Column, DateTime, ForeignKey, Index, Integer, LargeBinary, MetaData, String, Table, Text
from sqlalchemy.types import TypeDecorator


class Status(StrEnum):
    RECEIVED = "received"
    PROCESSING = "processing"
    RETRYING = "retrying"
    DONE = "done"
    IGNORED = "ignored"
    INVALID = "invalid"
    DEAD = "dead"
    DUPLICATE = "duplicate"


# Still to be processed: what the reconciler watches over, and what pruning never touches.
UNFINISHED_STATUSES = (Status.RECEIVED, Status.PROCESSING, Status.RETRYING)
# Succeeded, or nothing to do: pruned once old enough.
FINISHED_STATUSES = (Status.DONE, Status.IGNORED, Status.DUPLICATE)
# Given up on: kept until someone has looked (`prune --include-failed`).
FAILED_STATUSES = (Status.DEAD, Status.INVALID)
# No worker will touch these again; only a replay can.
FINAL_STATUSES = FINISHED_STATUSES + FAILED_STATUSES
# What `recover` replays unless told otherwise: what failed after the acknowledgement.
RECOVERABLE_STATUSES = (Status.DEAD,)

# The version of the tables below. Raise it with any change to them, together with the upgrade.
SCHEMA_VERSION = 1


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in Python, zone-less UTC in the database (the same on SQLite and PostgreSQL)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.astimezone(UTC).replace(tzinfo=None) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None else None


metadata = MetaData()

events = Table(
    "inbox_events",
    metadata,
    Column("id", Integer, primary_key=True),
    # The message id (svix-id); `msg_id` in the database, `message_id` everywhere a person or handler sees it.
    Column("msg_id", String(255), nullable=False, unique=True),
    Column("status", String(16), nullable=False),
    # The event type as resolved at intake (or by the API), and the URL path's type, kept so that a
    # replay can resolve the type again with today's configuration.
    Column("event_type", String(255)),
    Column("path_type", String(255)),
    Column("kind", String(16)),
    Column("request_id", String(64)),
    # "<kind>:<request_id>", set on the one event that processes an optimization. A second message
    # for the same optimization (another svix-id) cannot take it and becomes a duplicate.
    Column("optimization_key", String(100), unique=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("claim_token", String(32)),
    Column("lease_until", UTCDateTime),
    Column("next_attempt_at", UTCDateTime),
    Column("last_error", Text),
    Column("result_summary", Text),  # the console summary of the fetched result, once done
    Column("body", LargeBinary, nullable=False),
    Column("headers", Text, nullable=False),
    Column("received_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Index("ix_inbox_events_status_due", "status", "next_attempt_at"),
    Index("ix_inbox_events_status_id", "status", "id"),
    Index("ix_inbox_events_received_at", "received_at"),
)

history = Table(
    "inbox_history",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("event_id", Integer, ForeignKey("inbox_events.id"), nullable=False, index=True),
    Column("at", UTCDateTime, nullable=False),
    Column("action", String(16), nullable=False),
    Column("attempt", Integer),
    Column("error", Text),
)

schema_info = Table(
    "inbox_schema",
    metadata,
    Column("id", Integer, primary_key=True),  # always 1: one row
    Column("version", Integer, nullable=False),
)
