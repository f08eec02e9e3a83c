"""The floor: the least a receiver that keeps this service's promise can do, under the same gunicorn.

It verifies the signature with the svix library, inserts the delivery into SQLite (WAL,
synchronous=FULL) with the sqlite3 module itself, commits, and only then answers 204: no ORM, no
queue, no log line, no JSON. Writers take turns on the service's writers' lock (writers_lock.py), so
none sleeps in SQLite's busy handler while the database is free.

What a receiver adds to the ceiling cannot be less than what this adds, so the floor's share of the
ceiling is the most any durable receiver can reach on this server and machine: where it is under a
target, the target cannot be met here.
"""

import os
import sqlite3
import threading
from pathlib import Path

from flask import Flask, request
from svix.webhooks import Webhook, WebhookVerificationError

from writers_lock import WritersLock

SCHEMA = (
    "create table if not exists deliveries (id integer primary key, msg_id text not null unique, body blob not null)"
)
INSERT = "insert into deliveries (msg_id, body) values (?, ?) on conflict (msg_id) do nothing"


def create_app() -> Flask:
    webhook = Webhook(os.environ["WEBHOOK_SECRET"])
    path = os.environ["DATABASE_URL"].removeprefix("sqlite:///") + ".floor"
    with sqlite3.connect(path) as setup:
        setup.execute("PRAGMA journal_mode=WAL")
        setup.execute(SCHEMA)
    local = threading.local()
    writers = WritersLock(Path(path + "-writers.lock"))

    def connection() -> sqlite3.Connection:
        if not hasattr(local, "connection"):
            local.connection = sqlite3.connect(path, isolation_level=None, timeout=5)
            local.connection.execute("PRAGMA synchronous=FULL")
        return local.connection

    app = Flask(__name__)

    @app.post("/webhook/<path:_path>")
    def receive(_path: str) -> tuple[str, int] | tuple[dict[str, str], int]:
        body = request.get_data()
        try:
            webhook.verify(body, request.headers)
        except WebhookVerificationError:
            return {"error": "invalid signature"}, 401
        db = connection()
        with writers.turn():
            try:
                db.execute("BEGIN IMMEDIATE")
                db.execute(INSERT, (request.headers["svix-id"], body))
                db.execute("COMMIT")
            except sqlite3.Error:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
        return "", 204

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
