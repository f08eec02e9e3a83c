"""The receivers the acknowledgement part measures this service against, each a factory gunicorn
loads under the same settings as the service: `bench.apps:ceiling()`, `bench.apps:floor()` and
`bench.apps:inline()`. bench/README.md says what each one stands for.

They read the service's environment variables (WEBHOOK_SECRET, DATABASE_URL, OPTIPICK_API_URL,
OPTIPICK_API_KEY). Each factory imports what only it needs, so the ceiling's process holds nothing
but Flask, as a bare endpoint's would.
"""

import os
from collections.abc import Callable

from flask import Flask, request
from flask.typing import ResponseReturnValue

Receive = Callable[[bytes], ResponseReturnValue]


def ceiling() -> Flask:
    """A bare Flask endpoint: read the body, answer 204."""
    return _app(lambda body: ("", 204))


def floor() -> Flask:
    """The least a durable receiver does: verify with svix, insert the delivery into SQLite (WAL,
    synchronous=FULL) as one plain SQL statement, and answer 204 once it is committed. It commits
    with the service's own machinery: deliveries that arrive together share one commit
    (inbox/group_commit.py), and the writers of every gunicorn worker take turns (inbox/writers_lock.py)."""
    from sqlalchemy import Connection

    from inbox import SqliteDatabase
    from inbox.group_commit import GroupCommit

    database = SqliteDatabase(os.environ["DATABASE_URL"] + ".floor")  # WAL, synchronous=FULL
    engine = database.engine
    with engine.begin() as setup:
        setup.exec_driver_sql(
            "create table if not exists deliveries "
            "(id integer primary key, msg_id text not null unique, body blob not null)"
        )
    insert = "insert into deliveries (msg_id, body) values (?, ?) on conflict (msg_id) do nothing"

    def write(connection: Connection, delivery: tuple[str, bytes]) -> None:
        connection.exec_driver_sql(insert, delivery)

    commits = GroupCommit(engine, write, turn=database.turn, order=lambda delivery: delivery[0])

    def receive(body: bytes) -> ResponseReturnValue:
        commits.submit((request.headers["svix-id"], body))
        return "", 204

    return _app(_verified(receive))


def inline() -> Flask:
    """The receiver people often write first, and copy: verify with svix, fetch the result from the
    OptiPick API inside the request, answer. It is given every fair advantage: a keep-alive session
    per thread, and no handler work beyond reading the JSON."""
    import json
    import threading

    import requests

    api_url = os.environ["OPTIPICK_API_URL"].rstrip("/")
    api_key = os.environ["OPTIPICK_API_KEY"]
    local = threading.local()

    def session() -> requests.Session:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.headers.update({"X-API-KEY": api_key, "Accept": "application/json"})
        return local.session

    def receive(body: bytes) -> ResponseReturnValue:
        request_id = json.loads(body)["request_id"]
        response = session().get(f"{api_url}/optimize/route/{request_id}", timeout=15)
        if response.status_code != 200:
            return {"error": f"API answered {response.status_code}"}, 502
        response.json()  # a handler would use the result here
        return {"status": "processed"}, 200

    return _app(_verified(receive))


def _verified(receive: Receive) -> Receive:
    """`receive`, behind a check of the svix signature against WEBHOOK_SECRET (401 when it fails)."""
    from svix.webhooks import Webhook, WebhookVerificationError

    webhook = Webhook(os.environ["WEBHOOK_SECRET"])

    def verified(body: bytes) -> ResponseReturnValue:
        try:
            webhook.verify(body, request.headers)
        except WebhookVerificationError:
            return {"error": "invalid signature"}, 401
        return receive(body)

    return verified


def _app(receive: Receive) -> Flask:
    """A Flask app answering POST /webhook/<anything> with `receive(body)`, and GET /healthz."""
    app = Flask(__name__)

    @app.post("/webhook/<path:_path>")
    def webhook(_path: str) -> ResponseReturnValue:
        return receive(request.get_data())

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
