"""The whole flow in one process: a signed delivery in, the result fetched and handed to the handlers."""

import json

from support.deliveries import drain
from support.standin import ROUTE_ID

from inbox import Status


def test_signed_delivery_is_fetched_and_written_once(sender, services, api, settings):
    """A route delivery is stored, processed by the queue, fetched once and written to the results folder."""
    response = sender.send({"request_id": ROUTE_ID}, path="/webhook/route")
    assert response.status_code == 200
    assert drain(services) == 1
    [event] = services.inbox.latest()
    assert event.status is Status.DONE
    assert api.fetches[("route", ROUTE_ID)] == 1
    written = json.loads((settings.results_dir / "route" / f"{ROUTE_ID}.json").read_text())
    assert written["request_id"] == ROUTE_ID


def test_sqlite_inbox_runs_in_wal_mode_with_full_sync(services):
    """The SQLite inbox commits durably: WAL journal and synchronous=FULL on every connection."""
    with services.inbox.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
