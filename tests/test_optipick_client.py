"""The OptiPick API client (optipick_client.py), against real loopback servers: timeouts, redirects that are
never followed (the API key stays with OPTIPICK_API_URL), and the proxy settings of the environment."""

import json
import threading
import time
from datetime import UTC, datetime

import pytest
from support.deliveries import route_event
from support.standin import API_KEY, ROUTE_ID
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from errors import ApiUnavailable
from event_types import Kind
from inbox import Status
from optipick_client import OptiPickClient
from optipick_standin import StandInApi, example_result


def test_read_timeout_raises_api_unavailable():
    """An API slower than the read timeout raises ApiUnavailable within about that timeout."""
    slow = StandInApi(API_KEY, delay=0.6)
    slow.add_result("route", ROUTE_ID)
    with slow.serve():
        client = OptiPickClient(slow.url, API_KEY, timeout=(1, 0.2))
        started = time.monotonic()
        with pytest.raises(ApiUnavailable, match="timed out"):
            client.fetch(Kind.ROUTE, ROUTE_ID)
        elapsed = time.monotonic() - started
        client.close()
    assert elapsed < 0.5
    assert slow.fetches[("route", ROUTE_ID)] == 1


@pytest.fixture(scope="module")
def redirect_target():
    """A second loopback server that records the headers of every request it gets."""
    seen: list[dict[str, str]] = []

    @Request.application
    def record(request: Request) -> Response:
        seen.append(dict(request.headers))
        return Response(json.dumps(example_result("route", ROUTE_ID)), content_type="application/json")

    server = make_server("127.0.0.1", 0, record, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.port}", seen
    finally:
        server.shutdown()
        thread.join()


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_redirect_is_not_followed_and_key_stays_home(api, services, sender, redirect_target, status):
    """A redirect from the API is not followed: the event is retried and the redirect target receives nothing."""
    target_url, seen = redirect_target
    seen.clear()
    api.fail_first("route", ROUTE_ID, (status, {"Location": f"{target_url}/optimize/route/{ROUTE_ID}"}, ""))
    stored = route_event(services, sender)
    assert services.processor.process(stored.id, now=datetime.now(UTC)) is Status.RETRYING
    row = services.inbox.get(stored.id)
    assert "redirect" in row.last_error
    assert f"({status})" in row.last_error
    assert seen == []
    assert api.fetches[("route", ROUTE_ID)] == 1


def test_proxy_from_the_environment_is_used(redirect_target, monkeypatch):
    """HTTP_PROXY is honoured, as requests honours it, though the client reads the environment only once."""
    proxy_url, seen = redirect_target  # a loopback server standing in for the proxy
    seen.clear()
    monkeypatch.setenv("HTTP_PROXY", proxy_url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    client = OptiPickClient("http://optipick.example.invalid", API_KEY)
    try:
        assert client.fetch(Kind.ROUTE, ROUTE_ID).request_id == ROUTE_ID
        assert client.fetch(Kind.ROUTE, ROUTE_ID).request_id == ROUTE_ID
    finally:
        client.close()
    assert [headers["Host"] for headers in seen] == ["optipick.example.invalid"] * 2
    assert seen[0]["X-Api-Key"] == API_KEY


def test_no_proxy_from_the_environment_is_used(api, redirect_target, monkeypatch):
    """NO_PROXY keeps the API's host away from HTTP_PROXY, as requests does."""
    proxy_url, seen = redirect_target
    seen.clear()
    api.add_result("route", ROUTE_ID)
    monkeypatch.setenv("HTTP_PROXY", proxy_url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    client = OptiPickClient(api.url, API_KEY)
    try:
        assert client.fetch(Kind.ROUTE, ROUTE_ID).request_id == ROUTE_ID
    finally:
        client.close()
    assert seen == []
    assert api.fetches[("route", ROUTE_ID)] == 1
