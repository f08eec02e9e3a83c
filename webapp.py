"""The web side: `POST /webhook` verifies, stores and acknowledges; `GET /healthz` says whether it can.

The request path never calls the OptiPick API. Order of work, cheapest rejection first:
method (405) → size (413) → content type (415) → signature (401) → id and payload checks (400)
→ durable insert (503 when it fails) → enqueue (best effort, briefly) → 2xx.
A 2xx is sent only once the delivery is committed to the inbox, or was already there; and every
delivery is answered within ACK_DEADLINE_SECONDS of the moment a server thread takes it: the commit
waits for the database until the deadline less what the enqueue and the answer may take
(defaults.ANSWER_RESERVE_SECONDS), then gives up with a 503, which Svix retries.
"""

import logging
import time

from flask import Flask, Response, current_app, jsonify, request
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.wrappers import Response as WerkzeugResponse

import defaults
from config import configure_logging, load_settings
from errors import InboxUnavailable
from event_types import EventType
from inbox import Status, describe_error
from intake import MESSAGE_ID_PATTERN, message_id_of, read_delivery
from printable import printable
from services import Services
from signatures import InvalidSignature, SignatureVerifier

log = logging.getLogger("webhook")

# Tells hosted Svix to stop retrying a message that can never succeed. ("disable" would switch the
# whole endpoint off, and is never sent.)
ABORT_HEADERS = {"webhook-delivery": "abort-message"}
# Characters of a sender's values a log line shows (the rest is cut): a method, a path, a message id.
METHOD_LIMIT = 20
PATH_LIMIT = 100
MESSAGE_ID_LIMIT = 80


def create_app(services: Services | None = None) -> Flask:
    """Build the web app on `services` (the inbox, queue and settings it shares with an embedded consumer).

    Without them, as under a WSGI server (`gunicorn 'webapp:create_app()'`), it reads the settings from
    the environment, sets up logging and builds its own.
    """
    if services is None:
        settings = load_settings()
        configure_logging(settings.log_level)
        services = Services.build(settings)
    settings = services.settings

    app = Flask(__name__)
    # One byte over the limit, so a chunked body (no Content-Length) that is too large is read far
    # enough to tell: werkzeug stops reading a chunked body at the limit without raising 413.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes + 1
    app.extensions["optipick"] = services
    app.extensions["optipick.verifier"] = SignatureVerifier(settings.webhook_secrets)
    # Never answer a webhook with a redirect (Svix counts a 3xx as a failure): no redirect to add
    # or merge slashes.
    app.url_map.strict_slashes = False
    app.url_map.merge_slashes = False

    # No automatic OPTIONS: every method but POST is a 405.
    app.add_url_rule(
        "/webhook", view_func=receive, methods=["POST"], defaults={"path_type": None}, provide_automatic_options=False
    )
    app.add_url_rule("/webhook/<path:path_type>", view_func=receive, methods=["POST"], provide_automatic_options=False)
    app.add_url_rule("/healthz", view_func=healthz, methods=["GET"])
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(Exception, unexpected_error)
    return app


def receive(path_type: str | None) -> Response | tuple[Response, int] | tuple[Response, int, dict[str, str]]:
    """POST /webhook: verify the delivery, store it durably, enqueue it, and answer; never call the API."""
    started = time.monotonic()
    services: Services = current_app.extensions["optipick"]
    verifier: SignatureVerifier = current_app.extensions["optipick.verifier"]

    if request.content_length is not None and request.content_length > services.settings.max_body_bytes:
        return refused(413, "payload too large")
    if not request.is_json:
        return refused(415, "content type must be application/json")
    path_event_type = None
    if path_type is not None:
        path_event_type = EventType.parse(path_type.strip("/"))
        if path_event_type is None:
            raise NotFound()
    body = request.get_data(cache=True)
    if len(body) > services.settings.max_body_bytes:  # a chunked body: its size is known only now
        return refused(413, "payload too large")

    try:
        verifier.verify(body, request.headers)
    except InvalidSignature as exc:
        log.warning(
            "rejected delivery '%s' from %s: %s",
            printable(message_id_of(request.headers), limit=MESSAGE_ID_LIMIT),
            printable(request.remote_addr),
            printable(exc),
        )
        return error(401, "invalid signature")

    message_id = message_id_of(request.headers)
    if not MESSAGE_ID_PATTERN.fullmatch(message_id):
        log.warning(
            "rejected signed delivery '%s': the message id is not a usable key",
            printable(message_id, limit=MESSAGE_ID_LIMIT),
        )
        return error(400, "unusable message id", headers=ABORT_HEADERS)

    delivery = read_delivery(message_id, body, request.headers, path_event_type, services.settings.default_event_type)
    deadline = started + services.settings.ack_deadline - defaults.ANSWER_RESERVE_SECONDS
    try:
        added = services.inbox.add(delivery, deadline=deadline)
    except (SQLAlchemyError, InboxUnavailable) as exc:
        log.error("could not store delivery %s, answering 503: %s", message_id, describe_error(exc))
        return error(503, "cannot store the delivery now", headers={"Retry-After": str(defaults.RETRY_AFTER_ON_503)})

    stored = added.event
    if added.created and stored.status is Status.RECEIVED:
        try:
            services.queue.offer(stored.id)
        except Exception as exc:  # the row is committed; the reconciler will enqueue it
            log.warning("stored %s but could not enqueue it (%s); the reconciler will", message_id, type(exc).__name__)

    elapsed_ms = (time.monotonic() - started) * 1000
    log.info(
        "%s %s: %s, type %s, request %s (%.1f ms)",
        "accepted" if added.created else "redelivered",
        message_id,
        stored.status,
        stored.event_type or "unknown yet",
        stored.request_id,
        elapsed_ms,
    )
    if stored.status is Status.INVALID:
        return error(400, stored.last_error or "invalid payload", headers=ABORT_HEADERS)
    # A redelivery (the same svix-id again) is answered "redelivered", whatever the first delivery's
    # status: it changed nothing. ("duplicate" is a status: another message for the same optimization.)
    return jsonify(status=str(stored.status) if added.created else "redelivered"), 200


def healthz() -> tuple[Response, int]:
    """GET /healthz: 200 when a delivery could be stored now, else 503 (Inbox.check says how it tells)."""
    services: Services = current_app.extensions["optipick"]
    try:
        services.inbox.check(time.monotonic() + defaults.HEALTH_CHECK_SECONDS)
    except (SQLAlchemyError, InboxUnavailable) as exc:
        log.error("health check failed: the inbox cannot store a delivery now (%s)", describe_error(exc))
        return jsonify(status="unavailable"), 503
    return jsonify(status="ok"), 200


def error(status: int, message: str, headers: dict[str, str] | None = None) -> tuple[Response, int, dict[str, str]]:
    return jsonify(error=message), status, headers or {}


def refused(status: int, message: str) -> tuple[Response, int, dict[str, str]]:
    """A request turned away before its signature was looked at, with the log line that says so."""
    log.info("refused %s %s: %d %s", *_method_and_path(), status, message)
    return error(status, message)


def http_error(exc: HTTPException) -> WerkzeugResponse:
    """Flask's own errors (404, 405, 413) as short JSON, keeping their headers (Allow on a 405)."""
    log.info("refused %s %s: %d %s", *_method_and_path(), exc.code, (exc.name or "").lower())
    response = exc.get_response()
    response.set_data(jsonify(error=(exc.name or "error").lower()).get_data())
    response.content_type = "application/json"
    return response


def unexpected_error(exc: Exception) -> tuple[Response, int]:
    log.exception("unexpected error on %s %s", *_method_and_path())
    return jsonify(error="internal error"), 500


def _method_and_path() -> tuple[str, str]:
    """The request's method and path as a log line can show them: anyone can send any, unsigned."""
    return printable(request.method, limit=METHOD_LIMIT), printable(request.path, limit=PATH_LIMIT)
