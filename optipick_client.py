"""The OptiPick REST API, as far as this service needs it: fetch a route or cluster result.

Every failure becomes one of the typed errors in errors.py, so the worker can decide between
retrying and giving up without knowing HTTP. The API key travels only in the X-API-KEY header, only
to OPTIPICK_API_URL: redirects are never followed (requests would carry a custom header to the new
host), and the request id is checked before it becomes part of a URL.

Every call has a budget, so a misbehaving API cannot hold a worker thread or its memory: a deadline
for the whole call (connecting, the headers and every byte of the body, however slowly they come)
and a cap on the answer's size (MAX_RESULT_BYTES). The body is read as a stream, and the connection
is closed the moment either is exceeded.
"""

import contextlib
import email.utils
import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import requests

import defaults
from api_deadline import Call, Watchdog, WatchedAdapter, watched
from errors import ApiUnavailable, AuthenticationError, RateLimited, ResultNotFound, UnreadableResult
from event_types import REQUEST_ID_PATTERN, Kind
from results import Result, parse_result

log = logging.getLogger(__name__)

USER_AGENT = "optipick-webhooks/1.0"
PROBE_REQUEST_ID = "000000000000000000000000"  # well-formed, and never issued
# Bytes read from the answer at a time: each read is counted against MAX_RESULT_BYTES before the next.
READ_CHUNK_BYTES = 64 * 1024
# Bytes of an answer other than 200 read to its end (its body is not used), so that its kept-alive
# connection serves the next call; a larger one is dropped with its connection.
DRAIN_BYTES = 64 * 1024


class OptiPickClient:
    """Owns the conversation with the OptiPick API: one kept-alive session, the key, and what each answer means."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: tuple[float, float] = defaults.API_TIMEOUT,
        deadline: float = defaults.API_DEADLINE_SECONDS,
        max_result_bytes: int = defaults.MAX_RESULT_BYTES,
        connections: int = 10,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.deadline = deadline
        self.max_result_bytes = max_result_bytes
        # No single wait may be longer than the whole call.
        self.timeout = (min(timeout[0], deadline), min(timeout[1], deadline))
        self._watchdog = Watchdog()
        self.session = requests.Session()
        # One kept-alive connection per worker thread; requests keeps 10 by default, so more threads
        # would open and close a connection for every fetch.
        adapter = WatchedAdapter(pool_connections=1, pool_maxsize=max(10, connections))
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
        self._watchdog.close()

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
        with self._budget(path):
            response = self._send(path)
            response.close()  # the body does not matter: the status and the Date header say it all
        date = response.headers.get("Date")
        try:
            server_time = email.utils.parsedate_to_datetime(date) if date else None
        except (TypeError, ValueError):
            server_time = None
        return response.status_code, server_time

    def _get(self, path: str) -> Any:
        """The JSON document the API answers to GET `path`, within the call's budget."""
        with self._budget(path) as call:
            response = self._send(path)
            with contextlib.closing(response):  # a body left unread closes the connection
                if response.status_code == 200:
                    return _parse(path, self._read(path, response, call))
                _drain(response)
                raise _refusal(path, response)

    def _send(self, path: str) -> requests.Response:
        """The answer's status and headers; the body stays on the wire until it is read."""
        return self.session.get(self.base_url + path, timeout=self.timeout, allow_redirects=False, stream=True)

    @contextlib.contextmanager
    def _budget(self, path: str) -> Iterator[Call]:
        """One call against the deadline (api_deadline.py): what requests raises becomes ApiUnavailable,
        saying whether the deadline cut the call off."""
        with watched(self._watchdog, self.deadline) as call:
            try:
                yield call
            except requests.RequestException as exc:
                if call.expired:
                    raise ApiUnavailable(self._over_deadline(path)) from None
                if isinstance(exc, requests.Timeout):
                    raise ApiUnavailable(f"GET {path} timed out") from None
                raise ApiUnavailable(f"GET {path} failed: {type(exc).__name__}") from None

    def _read(self, path: str, response: requests.Response, call: Call) -> bytearray:
        """The whole body, read in chunks, refused as soon as it is larger than max_result_bytes."""
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_result_bytes:
            raise ApiUnavailable(self._too_large(path))
        body = bytearray()
        for chunk in response.iter_content(READ_CHUNK_BYTES):
            body += chunk
            if len(body) > self.max_result_bytes:
                raise ApiUnavailable(self._too_large(path))
        if call.expired:  # cut off, but the body had no length to tell it short
            raise ApiUnavailable(self._over_deadline(path))
        return body

    def _over_deadline(self, path: str) -> str:
        return f"GET {path} took longer than {self.deadline:g} s in all"

    def _too_large(self, path: str) -> str:
        return f"GET {path} answer is larger than MAX_RESULT_BYTES ({self.max_result_bytes} bytes)"


class _NotANumber(ValueError):
    """JSON has no NaN or Infinity; Python's parser accepts them unless told not to."""


def _refuse_constant(name: str) -> Any:
    raise _NotANumber(name)


def _parse(path: str, body: bytearray) -> Any:
    """A 200's body as JSON, strictly: UnreadableResult when no parser would read it."""
    try:
        return json.loads(body, parse_constant=_refuse_constant)
    except _NotANumber as exc:
        raise UnreadableResult(
            f"GET {path} answered 200 with {exc} where a number goes, which JSON does not allow"
        ) from None
    except RecursionError:
        raise UnreadableResult(f"GET {path} answered 200 with JSON nested too deeply to read") from None
    except ValueError as exc:  # JSONDecodeError, and UnicodeDecodeError for bytes that are not UTF-8
        raise UnreadableResult(f"GET {path} answered 200 with a body that is not JSON ({exc})") from None


def _drain(response: requests.Response) -> None:
    """Read a small body to its end, so the connection goes back to the pool; one without a length, too
    large or broken is left for close() to drop with its connection."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) <= DRAIN_BYTES:
        with contextlib.suppress(requests.RequestException):
            for _ in response.iter_content(READ_CHUNK_BYTES):
                pass


def _refusal(path: str, response: requests.Response) -> Exception:
    """The typed error for an answer other than 200."""
    status = response.status_code
    if status in (401, 403):
        return AuthenticationError(
            f"the OptiPick API refused OPTIPICK_API_KEY (HTTP {status}): check the key under "
            "Settings → API Keys in the OptiPick web app"
        )
    if status in (404, 422):
        return ResultNotFound(f"GET {path} answered {status}: no result for this request id (yet)")
    if status == 429:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        return RateLimited(f"GET {path} answered 429: rate limited", retry_after)
    if 300 <= status < 400:
        return ApiUnavailable(
            f"GET {path} answered a redirect ({status}), which is not followed so the API key stays "
            "with OPTIPICK_API_URL: check that setting"
        )
    return ApiUnavailable(f"GET {path} answered {status}")


# The deadline ---------------------------------------------------------------------------------------
#
# A socket timeout bounds each wait for the network, not their sum: an answer that trickles in a byte
# at a time never trips it. So a watchdog thread shuts down the socket of every call still running at
# its deadline, which wakes the read blocked on it at once, whether it waits for the headers or the
# body. The connections tell it which socket is whose: each one joins the call of the thread that sends
# a request on it. (A SOCKS proxy's connections are not watched; such a call is refused as over its
# deadline once its reads end, each bounded by the read timeout.)


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
