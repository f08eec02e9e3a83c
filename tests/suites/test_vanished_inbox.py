"""An inbox file deleted or replaced under a running service is noticed: deliveries are answered 503
(never 200 into a file nobody will read), GET /healthz answers 503, one ERROR line says what happened
and what to do, and the worker stops claiming. And /healthz answers 503 whenever a delivery could not be
stored now (here: a read-only inbox), and 200 again once one could.
"""

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import requests
from sqlalchemy import event
from sqlalchemy.engine import make_url
from support.processes import process_env, wait_until
from support.standin import ROUTE_ID

from inbox import Inbox
from services import Services
from signatures import new_message_id, signed_headers
from work_queue import close_huey, create_huey

BODY = json.dumps({"request_id": ROUTE_ID})
VANISHED = "was deleted or replaced while the service ran: restart it so it opens the file at DATABASE_URL"


def delete(path: Path) -> None:
    os.remove(path)


def replace(path: Path) -> None:
    """Put a copy in the file's place, as a restore from a backup would: the same rows, another file."""
    shutil.copy(path, path.with_name("inbox.db.copy"))
    os.replace(path.with_name("inbox.db.copy"), path)


def inbox_file(services: Services) -> Path:
    database = make_url(services.settings.database_url).database
    assert database is not None
    return Path(database)


@pytest.mark.parametrize("vanish", [delete, replace], ids=["deleted", "replaced"])
def test_a_vanished_inbox_file_gets_503s_a_failing_healthz_one_error_and_no_claims(
    vanish: Callable[[Path], None], services, sender, client, api, caplog
):
    """Once the inbox file is deleted or replaced, each delivery is answered 503 with Retry-After,
    /healthz is 503, the ERROR line naming the file and the fix is logged once, and an event waiting in
    the queue is neither claimed nor fetched (nor is anything reconciled)."""
    caplog.set_level(logging.INFO)
    waiting = sender.send(BODY, msg_id=new_message_id())
    assert waiting.status_code == 200
    stored = services.inbox.by_message_id(waiting.request.headers["svix-id"])
    assert stored is not None

    vanish(inbox_file(services))
    answers = [sender.send(BODY, msg_id=new_message_id()) for _ in range(3)]
    assert [answer.status_code for answer in answers] == [503] * 3
    assert all(int(answer.headers["Retry-After"]) > 0 for answer in answers)
    assert client.get("/healthz").status_code == 503

    assert services.processor.process(stored.id) is None
    assert services.processor.reconcile() == 0
    assert api.total_fetches() == 0
    errors = [record for record in caplog.records if record.levelno == logging.ERROR and VANISHED in record.message]
    assert len(errors) == 1, [record.message for record in caplog.records]
    assert str(inbox_file(services)) in errors[0].message
    assert "no such table" not in caplog.text


def test_an_inbox_that_stays_in_place_is_not_taken_for_a_vanished_one(services, sender, client, caplog):
    """Deliveries, health checks and claims on the file as opened never trip the check."""
    assert [sender.send(BODY, msg_id=new_message_id()).status_code for _ in range(3)] == [200] * 3
    assert client.get("/healthz").status_code == 200
    assert VANISHED not in caplog.text


def read_only(dbapi_connection: object, _record: object) -> None:
    """SQLite's own read-only mode (a write fails with "attempt to write a readonly database", as on a
    file or file system that cannot be written)."""
    dbapi_connection.execute("pragma query_only = 1")  # type: ignore[attr-defined]


def test_healthz_says_503_while_every_delivery_gets_503_and_200_once_one_would_be_stored(services, sender, client):
    """With the inbox unwritable, deliveries get 503 and so does /healthz (a read alone would say 200);
    once it is writable again /healthz is 200 before any delivery has come, and deliveries are stored."""
    engine = services.inbox.engine
    event.listen(engine, "connect", read_only)
    engine.dispose()  # every connection from now on is read-only
    try:
        assert sender.send(BODY, msg_id=new_message_id()).status_code == 503
        assert client.get("/healthz").status_code == 503
        assert client.get("/healthz").status_code == 503
    finally:
        event.remove(engine, "connect", read_only)
        engine.dispose()
    assert client.get("/healthz").status_code == 200
    assert sender.send(BODY, msg_id=new_message_id()).status_code == 200
    assert client.get("/healthz").status_code == 200


def post(base_url: str, secret: str, msg_id: str) -> int:
    """A route delivery signed now (a Svix retry is signed afresh); its status."""
    headers = signed_headers(secret, BODY, msg_id)
    response = requests.post(f"{base_url}/webhook/route", data=BODY, headers=headers, timeout=20)
    return response.status_code


@pytest.mark.slow
def test_python_main_with_its_inbox_deleted_acknowledges_nothing_it_would_lose(
    launch, environ, api, secret, port, base_url
):
    """`python main.py` whose inbox file is deleted while events wait in its queue: every later delivery
    is 503, /healthz is 503, the ERROR line is logged once, the waiting events are not fetched; after a
    restart, Svix's retries of the refused deliveries are stored, so none acknowledged was lost."""
    env = process_env(environ, PORT=str(port), WORKER_THREADS="1")
    receiver = launch(["main.py"], env)
    receiver.wait_healthy(base_url)
    api.delay = 1.0  # the first event's fetch is under way while the others wait in the queue
    before = [new_message_id() for _ in range(3)]
    assert [post(base_url, secret, msg_id) for msg_id in before] == [200] * 3
    wait_until(lambda: api.total_fetches() == 1, "the first fetch to start", watch=[receiver])
    os.remove(make_url(environ["DATABASE_URL"]).database or "")

    after = [new_message_id() for _ in range(5)]
    assert [post(base_url, secret, msg_id) for msg_id in after] == [503] * 5
    assert requests.get(f"{base_url}/healthz", timeout=5).status_code == 503
    api.delay = 0
    queue = create_huey(environ["QUEUE_URL"])
    try:
        wait_until(lambda: queue.pending_count() == 0, "the worker to take the waiting tasks", watch=[receiver])
    finally:
        close_huey(queue)
    time.sleep(0.5)  # time enough to have claimed and fetched them, had it claimed
    assert receiver.running()
    assert api.total_fetches() == 1
    log = receiver.log()
    assert log.count(VANISHED) == 1
    assert "no such table" not in log
    assert "Traceback" not in log

    receiver.stop()
    restarted = launch(["main.py"], env)
    restarted.wait_healthy(base_url)
    assert [post(base_url, secret, msg_id) for msg_id in after] == [200] * 5
    inbox = Inbox.open(environ["DATABASE_URL"])
    try:
        assert all(inbox.by_message_id(msg_id) is not None for msg_id in after)
    finally:
        inbox.close()
