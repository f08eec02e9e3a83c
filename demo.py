"""`python main.py demo`: the whole flow on this machine, with no OptiPick account and no network.

Starts the stand-in OptiPick API and the receiver on loopback (a throwaway secret, temporary
databases and results folder), sends a handful of deliveries signed as Svix signs them, shows what
the receiver did with each, checks every outcome, and stops. Nothing outside a temporary folder is
touched, and the configuration in .env is not used.
"""

import json
import logging
import signal
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import click
import requests

from config import configure_logging, load_settings
from http_server import WebServer
from inbox import FINAL_STATUSES, Status
from optipick_standin import StandInApi, example_result
from services import Services
from signatures import new_message_id, new_secret, signed_headers
from webapp import create_app

ROUTE_ID = "67d3f1a95e593173d0a1b2c4"  # the ids of the example results in fixtures/
CLUSTER_ID = "67d3f2af5e593173d0a1b2d9"
SECOND_ROUTE_ID = "67d3f1a95e593173d0a1b2ff"
WAREHOUSE_TYPE = "cluster.optimized.Example.673f48095739843f4de65ec9"
DEMO_API_KEY = "demo-api-key"
WAIT_SECONDS = 30


@dataclass(frozen=True)
class Delivery:
    what: str
    payload: dict[str, str]
    path: str = "/webhook"
    same_id_as: int | None = None  # index of an earlier delivery whose svix-id this one reuses
    forged: bool = False
    answer: int = 200
    final: Status | None = None  # None: nothing may be stored


DELIVERIES = (
    Delivery("route result, to /webhook/route", {"request_id": ROUTE_ID}, "/webhook/route", final=Status.DONE),
    Delivery(
        "cluster result, type in the payload",
        {"type": "cluster.optimized", "request_id": CLUSTER_ID},
        final=Status.DONE,
    ),
    Delivery("Svix retries the route delivery (same svix-id)", {"request_id": ROUTE_ID}, "/webhook/route", 0),
    Delivery(
        "the same cluster optimization, as the warehouse-specific type",
        {"type": WAREHOUSE_TYPE, "request_id": CLUSTER_ID},
        final=Status.DUPLICATE,
    ),
    Delivery("route result of unknown type: the API is asked", {"request_id": SECOND_ROUTE_ID}, final=Status.DONE),
    Delivery("an event of another type", {"type": "ping", "request_id": ROUTE_ID}, final=Status.IGNORED),
    Delivery("forged: signed with another secret", {"request_id": ROUTE_ID}, forged=True, answer=401),
)


def run_demo() -> bool:
    """Run the demo, printing as it goes; True when every delivery ended as it should."""
    configure_logging("INFO")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    api = StandInApi(DEMO_API_KEY)
    api.add_result("route", ROUTE_ID)
    api.add_result("cluster", CLUSTER_ID)
    api.add_result("route", SECOND_ROUTE_ID, example_result("route", SECOND_ROUTE_ID))
    with tempfile.TemporaryDirectory(prefix="optipick-demo-") as folder, api.serve():
        settings = load_settings(
            {
                "WEBHOOK_SECRET": new_secret(),
                "OPTIPICK_API_KEY": DEMO_API_KEY,
                "OPTIPICK_API_URL": api.url,
                "DATABASE_URL": f"sqlite:///{folder}/inbox.db",
                "QUEUE_URL": f"sqlite:///{folder}/queue.db",
                "RESULTS_DIR": f"{folder}/results",
            },
            env_file=None,
        )
        services = Services.build(settings)
        server = WebServer(create_app(services=services), "127.0.0.1", 0, settings.max_body_bytes)  # the real server
        threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
        consumer = services.queue.consumer(workers=2, shutdown_timeout=5)
        consumer.start()
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl+C ends the demo, not Huey's loop
        try:
            click.echo(f"\nstand-in OptiPick API on {api.url}; receiver on http://127.0.0.1:{server.port}/webhook\n")
            sent = send_all(f"http://127.0.0.1:{server.port}", settings.webhook_secrets[0])
            ok = report(services, sent, api, Path(folder) / "results")
        finally:
            server.shutdown()
            consumer.stop(graceful=True)
            services.close()
    return ok


def send_all(base_url: str, secret: str) -> list[tuple[str, int]]:
    """Send every delivery; return each one's svix-id and the HTTP status it got."""
    sent: list[tuple[str, int]] = []
    for number, delivery in enumerate(DELIVERIES, start=1):
        reused = delivery.same_id_as
        message_id = sent[reused][0] if reused is not None else new_message_id("msg_demo_")
        body = json.dumps(delivery.payload)
        headers = signed_headers(new_secret() if delivery.forged else secret, body, message_id)
        response = requests.post(base_url + delivery.path, data=body, headers=headers, timeout=10)
        click.echo(f"{number}. {delivery.what}\n   → {response.status_code} {response.text.strip()}")
        sent.append((message_id, response.status_code))
    return sent


def report(services: Services, sent: list[tuple[str, int]], api: StandInApi, results: Path) -> bool:
    """Wait for every stored delivery to reach a final status, then show and check the outcome."""
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        stored = [services.inbox.by_message_id(message_id) for message_id, _ in sent]
        if all(event is None or event.status in FINAL_STATUSES for event in stored):
            break
        time.sleep(0.1)
    click.echo("\nwhat the receiver did:")
    ok = True
    for number, (delivery, (message_id, answer)) in enumerate(zip(DELIVERIES, sent, strict=True), start=1):
        event = services.inbox.by_message_id(message_id)
        status = event.status if event else None
        expected = DELIVERIES[delivery.same_id_as].final if delivery.same_id_as is not None else delivery.final
        right = answer == delivery.answer and status == expected
        ok &= right
        note = f" ({event.last_error})" if event and event.last_error else ""
        verdict = "ok" if right else f"EXPECTED HTTP {delivery.answer} and {expected or 'nothing stored'}"
        click.echo(f"{number}. HTTP {answer}, {status or 'not stored'}{note}  [{verdict}]")
    rows = services.inbox.count()
    files = sorted(str(p.relative_to(results)) for p in results.rglob("*.json"))
    click.echo(f"\ninbox rows: {rows} for {len(DELIVERIES)} deliveries (a redelivery and a forgery add none)")
    click.echo(f"API fetches: {api.total_fetches()}; results folder: {', '.join(files) or 'empty'}")
    ok &= rows == sum(1 for d in DELIVERIES if d.final is not None)
    click.echo("\ndemo " + ("finished: every delivery ended as it should" if ok else "FAILED: see above"))
    return ok
