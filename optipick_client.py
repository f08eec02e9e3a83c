"""The OptiPick REST API, as far as this service needs it: fetch a route or cluster result.

Every failure becomes one of the typed errors in errors.py, so the worker can decide between
retrying and giving up without knowing HTTP. The API key travels only in the X-API-KEY header, only
to OPTIPICK_API_URL: redirects are never followed (requests would carry a custom header to the new
host), and the request id is checked before it becomes part of a URL.
"""

import email.utils
import logging
from datetime import UTC, datetime
from typing import Any

import requests
from requests.adapters import HTTPAdapter

import defaults
from errors import ApiUnavailable, AuthenticationError, RateLimited, ResultNotFound
from event_types import REQUEST_ID_PATTERN, Kind
from results import Result, parse_result

log = logging.getLogger(__name__)

USER_AGENT = "optipick-webhooks/1.0"
PROBE_REQUEST_ID = "000000000000000000000000"  # well-formed, and never issued


class OptiPickClient:
    """Owns the conversation with the OptiPick API: one kept-alive session, the key, and what each answer means."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: tuple[float, float] = defaults.API_TIMEOUT,
        connections: int = 10,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.session = requests.Session()
        # One kept-alive connection per worker thread; requests keeps 10 by default, so more threads
        # would open and close a connection for every fetch.
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max(10, connections))
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self.session.headers.update({"X-API-KEY": api_key, "Accept": "application/json", "User-Agent": USER_AGENT})
        self._settle_environment()

    def _settle_environment(self) -> None:
        """Read what the environment says about requests to the API once, not on every fetch.

        With trust_env, requests looks up the proxy variables, the CA bundle variables and ~/.netrc
        anew for each request, a visible share of a busy worker's profile. Every request here goes to
        base_url, so the answers are the same each time; they are taken now and kept on the session.
        """
        settings = self.session.merge_environment_settings(self.base_url, {}, None, None, None)
        self.session.proxies.update(settings["proxies"])
        self.session.verify = settings["verify"]
        self.session.cert = settings["cert"]
        self.session.auth = requests.utils.get_netrc_auth(self.base_url)
        self.session.trust_env = False

    def __repr__(self) -> str:
        return f"OptiPickClient({self.base_url!r})"

    def close(self) -> None:
        self.session.close()

    def fetch(self, kind: Kind, request_id: str) -> Result:
        """The result of one optimization. Raises an OptiPickError subclass when there is none."""
        document = self._get(f"/optimize/{kind}/{_checked(request_id)}")
        try:
            return parse_result(kind, document)
        except ValueError as exc:
            raise ApiUnavailable(f"{kind} result for {request_id} is unreadable: {exc}") from None

    def detect(self, request_id: str) -> Result:
        """Fetch a result whose kind is unknown: ask for a cluster result first, then a route result."""
        try:
            return self.fetch(Kind.CLUSTER, request_id)
        except ResultNotFound:
            pass
        try:
            return self.fetch(Kind.ROUTE, request_id)
        except ResultNotFound:
            raise ResultNotFound(f"no cluster or route result for {request_id}") from None

    def probe(self) -> tuple[int, datetime | None]:
        """Ask for a result that cannot exist, to test the key without touching real data.

        Returns the HTTP status (404 or 422: the key was accepted; 401 or 403: it was not) and the
        server's clock from its Date header. Raises ApiUnavailable when the API cannot be reached.
        """
        path = f"/optimize/route/{PROBE_REQUEST_ID}"
        try:
            response = self.session.get(self.base_url + path, timeout=self.timeout, allow_redirects=False)
        except requests.RequestException as exc:
            raise ApiUnavailable(f"GET {path} failed: {type(exc).__name__}") from None
        date = response.headers.get("Date")
        try:
            server_time = email.utils.parsedate_to_datetime(date) if date else None
        except (TypeError, ValueError):
            server_time = None
        return response.status_code, server_time

    def _get(self, path: str) -> Any:
        url = self.base_url + path
        try:
            response = self.session.get(url, timeout=self.timeout, allow_redirects=False)
        except requests.Timeout:
            raise ApiUnavailable(f"GET {path} timed out") from None
        except requests.RequestException as exc:
            raise ApiUnavailable(f"GET {path} failed: {type(exc).__name__}") from None

        status = response.status_code
        if status == 200:
            try:
                return response.json()
            except ValueError:
                raise ApiUnavailable(f"GET {path} answered 200 with a body that is not JSON") from None
        if status in (401, 403):
            raise AuthenticationError(
                f"the OptiPick API refused OPTIPICK_API_KEY (HTTP {status}): check the key under "
                "Settings → API Keys in the OptiPick web app"
            )
        if status in (404, 422):
            raise ResultNotFound(f"GET {path} answered {status}: no result for this request id (yet)")
        if status == 429:
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            raise RateLimited(f"GET {path} answered 429: rate limited", retry_after)
        if 300 <= status < 400:
            raise ApiUnavailable(
                f"GET {path} answered a redirect ({status}), which is not followed so the API key stays "
                "with OPTIPICK_API_URL: check that setting"
            )
        raise ApiUnavailable(f"GET {path} answered {status}")


def _checked(request_id: str) -> str:
    if not REQUEST_ID_PATTERN.fullmatch(request_id):
        # Intake refuses such ids, so this guards against a bug, not against a sender.
        raise ValueError(f"request id {request_id[:80]!r} is not safe to put in a URL")
    return request_id


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header: either a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
