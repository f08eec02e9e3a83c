"""What every answer of POST /webhook must respect, whatever the delivery."""

import json

from werkzeug.test import TestResponse


def assert_policy(status: int, headers: dict[str, str], body: bytes) -> None:
    """What every answer must respect: no 3xx, no 410, no `disable`, and short JSON error bodies."""
    assert not 300 <= status < 400
    assert status != 410
    assert {k.lower(): v for k, v in headers.items()}.get("webhook-delivery") != "disable"
    if status >= 400:
        assert len(body) < 120
        assert set(json.loads(body)) == {"error"}


def check(response: TestResponse) -> None:
    """assert_policy for a test client's response."""
    assert_policy(response.status_code, dict(response.headers), response.get_data())
