"""The floor: the least a receiver that keeps this service's promise can do, under the same gunicorn.

It verifies the signature with the svix library, inserts the delivery into SQLite (WAL,
synchronous=FULL) as one plain SQL statement, and answers 204 only once the row is committed: no
statement building, no queue, no log line, no JSON. It commits the way the service does, with the
service's own machinery: the deliveries that arrive together share one commit (group_commit.py), and
the writers of both gunicorn workers take turns on the writers' lock (writers_lock.py), so none sleeps
in SQLite's busy handler while the database is free.

What a receiver adds to the ceiling cannot be less than what this adds, so the floor's share of the
ceiling is the most any durable receiver can reach on this server and machine: where it is under a
target, the target cannot be met here.
"""

import os

from flask import Flask, request
from sqlalchemy import Connection
from svix.webhooks import Webhook, WebhookVerificationError

from group_commit import GroupCommit
from inbox import create_db_engine, writers_lock

SCHEMA = (
    "create table if not exists deliveries (id integer primary key, msg_id text not null unique, body blob not null)"
)
INSERT = "insert into deliveries (msg_id, body) values (?, ?) on conflict (msg_id) do nothing"


def insert(connection: Connection, delivery: tuple[str, bytes]) -> None:
    connection.exec_driver_sql(INSERT, delivery)


def create_app() -> Flask:
    webhook = Webhook(os.environ["WEBHOOK_SECRET"])
    engine = create_db_engine(os.environ["DATABASE_URL"] + ".floor")  # WAL, synchronous=FULL
    with engine.begin() as setup:
        setup.exec_driver_sql(SCHEMA)
    writers = writers_lock(engine)
    assert writers is not None, "the floor is a SQLite file"
    commits = GroupCommit(engine, insert, turn=writers.turn, order=lambda delivery: delivery[0])

    app = Flask(__name__)

    @app.post("/webhook/<path:_path>")
    def receive(_path: str) -> tuple[str, int] | tuple[dict[str, str], int]:
        body = request.get_data()
        try:
            webhook.verify(body, request.headers)
        except WebhookVerificationError:
            return {"error": "invalid signature"}, 401
        commits.submit((request.headers["svix-id"], body))
        return "", 204

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
