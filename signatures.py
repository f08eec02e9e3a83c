"""Signature verification with the svix library, against every configured secret.

The library raises WebhookVerificationError for a bad signature, and ValueError (binascii.Error and
UnicodeDecodeError included) for malformed headers or a body that is not UTF-8; all of them are an
authentication failure here, never a server error.
"""

import base64
import functools
import os
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import cast

from svix.webhooks import Webhook, WebhookVerificationError

from errors import ServiceError
from intake import Headers


class InvalidSignature(ServiceError):
    """The delivery is not authentic. The message says why, in words safe to log."""


class SignatureVerifier:
    def __init__(self, secrets: Sequence[str]) -> None:
        # Built once at start-up, so a secret the library cannot use fails there and not per request.
        self._webhooks = [Webhook(secret) for secret in secrets]

    def __repr__(self) -> str:
        return f"SignatureVerifier({len(self._webhooks)} secret(s))"

    def verify(self, body: bytes, headers: Headers) -> None:
        """Return when any configured secret signed `body`; raise InvalidSignature otherwise."""
        reason = "no secret configured"
        for webhook in self._webhooks:
            try:
                # The library only iterates `headers.items()`, which werkzeug's headers have too.
                webhook.verify(body, cast(dict[str, str], headers))
                return
            except WebhookVerificationError as exc:
                reason = str(exc)
            except ValueError as exc:
                reason = "body is not UTF-8" if isinstance(exc, UnicodeDecodeError) else "malformed signature header"
        raise InvalidSignature(reason)


def new_secret() -> str:
    """A fresh signing secret in Svix's format (`whsec_` and base64), for the demo, tests and the bench."""
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def new_message_id(prefix: str = "msg_") -> str:
    """A fresh message id of Svix's shape (`msg_` and letters and digits)."""
    return prefix + uuid.uuid4().hex


def signed_headers(
    secret: str, body: bytes | str, msg_id: str | None = None, now: datetime | None = None, prefix: str = "svix"
) -> dict[str, str]:
    """The headers Svix sends with `body`, signed with `secret` at `now`: for `send-test` and the demo,
    which sign as Svix does, and for the tests and the bench. `prefix="webhook"` gives the Standard
    Webhooks names (webhook-id, …) instead of svix-id, …"""
    msg_id = msg_id or new_message_id()
    now = now or datetime.now(UTC)
    text = body.decode() if isinstance(body, bytes) else body
    return {
        "content-type": "application/json",
        f"{prefix}-id": msg_id,
        f"{prefix}-timestamp": str(int(now.timestamp())),
        f"{prefix}-signature": _signer(secret).sign(msg_id, now, text),
    }


@functools.lru_cache(maxsize=16)
def _signer(secret: str) -> Webhook:
    """One Webhook per secret: a load generator signs thousands of bodies with the same one."""
    return Webhook(secret)
