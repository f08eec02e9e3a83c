"""The inline baseline: the receiver people often write first, and copy.

It verifies the signature with the svix library, then fetches the result from the OptiPick API
inside the request, and only then answers. Its acknowledgement therefore waits for the API: a slow
API means slow answers (and, past Svix's timeout, failed deliveries that are sent again). It is
given every fair advantage: a keep-alive session per thread, and no handler work beyond reading the
JSON. Settings come from the same environment variables as the service's.
"""

import json
import os
import threading

import requests
from flask import Flask, request
from svix.webhooks import Webhook, WebhookVerificationError


def create_app() -> Flask:
    webhook = Webhook(os.environ["WEBHOOK_SECRET"])
    api_url = os.environ["OPTIPICK_API_URL"].rstrip("/")
    api_key = os.environ["OPTIPICK_API_KEY"]
    local = threading.local()

    def session() -> requests.Session:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            local.session.headers.update({"X-API-KEY": api_key, "Accept": "application/json"})
        return local.session

    app = Flask(__name__)

    @app.post("/webhook/<path:_path>")
    def receive(_path: str) -> tuple[dict[str, str], int]:
        body = request.get_data()
        try:
            webhook.verify(body, request.headers)
        except WebhookVerificationError:
            return {"error": "invalid signature"}, 401
        request_id = json.loads(body)["request_id"]
        response = session().get(f"{api_url}/optimize/route/{request_id}", timeout=15)
        if response.status_code != 200:
            return {"error": f"API answered {response.status_code}"}, 502
        response.json()  # a handler would use the result here
        return {"status": "processed"}, 200

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
