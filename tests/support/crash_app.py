"""The receiver's web app for the crash suite, served by gunicorn as `support.crash_app:create_app()`.

It is `webapp.create_app()` unchanged, wrapped in a WSGI middleware that, for the POST storing a delivery
whose svix-id the test chose (CRASH_DIR/chosen-web-after-commit; each at most once), lets the real app answer
(so the row is committed and enqueued) and then SIGKILLs its own gunicorn worker before a byte of the answer
is sent: the sender sees a dropped connection and, like Svix, retries the same svix-id.
"""

import json
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask

from support.crash_common import CHOSEN_WEB, chosen, first_time, kill_self
from webapp import create_app as create_webapp


class KillAfterCommit:
    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self.app = app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST" or environ.get("HTTP_SVIX_ID") not in chosen(CHOSEN_WEB):
            return self.app(environ, start_response)
        answer: dict[str, Any] = {}

        def hold(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            answer.update(status=status, headers=headers, exc_info=exc_info)
            return lambda _data: None

        iterable = self.app(environ, hold)
        try:
            body = b"".join(iterable)
        finally:
            close = getattr(iterable, "close", None)
            if close is not None:
                close()
        msg_id = environ.get("HTTP_SVIX_ID", "")
        if self._stored_new(answer["status"], body) and first_time(f"web-{msg_id}"):
            kill_self("web-after-commit", msg_id)
        start_response(answer["status"], answer["headers"], answer["exc_info"])
        return [body]

    @staticmethod
    def _stored_new(status: str, body: bytes) -> bool:
        """Whether this answer is a 200 for a delivery stored just now (not a redelivery, not a rejection)."""
        if not status.startswith("200"):
            return False
        try:
            return json.loads(body).get("status") == "received"
        except ValueError:
            return False


def create_app() -> Flask:
    app = create_webapp()
    app.wsgi_app = KillAfterCommit(app.wsgi_app)  # type: ignore[method-assign]
    return app
