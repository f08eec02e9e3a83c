"""Signature verification with the svix library, against every configured secret.

The library raises WebhookVerificationError for a bad signature, and ValueError (binascii.Error and
UnicodeDecodeError included) for malformed headers or a body that is not UTF-8; all of them are an
authentication failure here, never a server error.
"""

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from svix.webhooks import Webhook, WebhookVerificationError

from errors import ServiceError


class InvalidSignature(ServiceError):
    """The delivery is not authentic. The message says why, in words safe to log."""


class SignatureVerifier:
    def __init__(self, secrets: Sequence[str]) -> None:
        # Built once at start-up, so a secret the library cannot use fails there and not per request.
        self._webhooks = [Webhook(secret) for secret in secrets]

    def __repr__(self) -> str:
        return f"SignatureVerifier({len(self._webhooks)} secret(s))"

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        """Return when any configured secret signed `body`; raise InvalidSignature otherwise."""
        reason = "no secret configured"
        for webhook in self._webhooks:
            try:
                webhook.verify(body, headers)
                return
            except WebhookVerificationError as exc:
                reason = str(exc)
            except ValueError as exc:
                reason = "body is not UTF-8" if isinstance(exc, UnicodeDecodeError) else "malformed signature header"
        raise InvalidSignature(reason)


def signed_headers(secret: str, msg_id: str, body: str, now: datetime | None = None) -> dict[str, str]:
    """The headers Svix sends with `body`: for `send-test` and the demo, which sign as Svix does."""
    now = now or datetime.now(UTC)
    return {
        "content-type": "application/json",
        "svix-id": msg_id,
        "svix-timestamp": str(int(now.timestamp())),
        "svix-signature": Webhook(secret).sign(msg_id, now, body),
    }
