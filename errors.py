"""The service's exceptions, in one place.

    ServiceError
    ├── ConfigError              a setting is missing or malformed; start-up stops
    ├── InboxUnavailable         the inbox cannot store a delivery now (its turn to write did not come
    │   │                        within the acknowledgement deadline); the delivery is answered 503
    │   └── InboxVanished        the inbox file at DATABASE_URL was deleted or replaced while the service
    │                            ran; nothing is stored or claimed until a restart opens the file there
    └── OptiPickError            the OptiPick API did not give us a result
        ├── AuthenticationError  401/403: OPTIPICK_API_KEY is wrong; retrying cannot help
        ├── ResultNotFound       404/422: no result (yet) for this request id; retried a few times
        ├── RateLimited          429: retried no sooner than the API asked (retry_after)
        ├── UnreadableResult     200 with a body no parser reads (not JSON, NaN or Infinity, nested too
        │                        deep); retried once, since asking again gets the same bytes
        └── ApiUnavailable       5xx, timeouts, over the call's time budget or MAX_RESULT_BYTES,
                                 connection errors, redirects, JSON that is not a result; retried

    HandlerError                 one or more handlers raised; the event is retried

Messages never contain the API key or a webhook secret.
"""


class ServiceError(Exception):
    """Base of every error this service raises on purpose."""


class ConfigError(ServiceError):
    """A setting is missing or malformed. The message names the variable and the fix."""


class InboxUnavailable(ServiceError):
    """The inbox cannot store a delivery now. Database errors stay SQLAlchemy's own; this is what the
    service itself decides (a deadline passed, the file is not the one it opened)."""


class InboxVanished(InboxUnavailable):
    """The SQLite file at DATABASE_URL is no longer the one the service opened: only a restart helps."""


class OptiPickError(ServiceError):
    """The OptiPick API did not give us a result."""


class AuthenticationError(OptiPickError):
    pass


class ResultNotFound(OptiPickError):
    pass


class RateLimited(OptiPickError):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UnreadableResult(OptiPickError):
    """The API answered 200 with a body that cannot be read as JSON. The message says what is wrong with it."""


class ApiUnavailable(OptiPickError):
    pass


class HandlerError(ServiceError):
    """At least one handler raised while handling an event; the whole event is retried."""
