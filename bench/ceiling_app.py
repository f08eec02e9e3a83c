"""The ceiling: a bare Flask endpoint that reads the body and answers 204, under the same gunicorn.

Nothing a webhook receiver does can be faster than this on the same server, framework and load
generator, so the other modes are reported as a share of it.
"""

from flask import Flask, request


def create_app() -> Flask:
    app = Flask(__name__)

    @app.post("/webhook/<path:_path>")
    def receive(_path: str) -> tuple[str, int]:
        request.get_data()
        return "", 204

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
