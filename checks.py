"""`python main.py check`: each part of the configuration, tried for real, with what to fix.

Every check returns a Check; none raises. The command exits 0 only when all of them pass.
"""

import os
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from clock import Clock, utcnow
from config import Settings
from errors import ApiUnavailable, ConfigError
from handlers import build_registry
from inbox import SCHEMA_VERSION, Inbox
from optipick_client import OptiPickClient
from work_queue import close_huey, create_huey, unusable_reason

# Seconds of clock difference with the API at which to warn, and at which signatures start failing.
CLOCK_WARN_SECONDS = 30
CLOCK_FAIL_SECONDS = 300


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    warning: bool = False  # passed, but worth a look

    @property
    def label(self) -> str:
        return "FAIL" if not self.ok else "WARN" if self.warning else "OK"


def run_checks(settings: Settings, now: Clock = utcnow) -> list[Check]:
    api, clock = check_api(settings, now)
    return [
        Check("webhook secrets", True, f"{len(settings.webhook_secrets)} secret(s), each a valid whsec_ key"),
        api,
        clock,
        check_database(settings),
        check_queue(settings),
        check_results_dir(settings),
        check_handlers(settings),
    ]


def check_api(settings: Settings, now: Clock = utcnow) -> tuple[Check, Check]:
    """The API key (by asking for a result that cannot exist) and the clock (against the API's)."""
    client = OptiPickClient(settings.optipick_api_url, settings.optipick_api_key)
    try:
        status, server_time = client.probe()
    except ApiUnavailable as exc:
        unreachable = f"cannot reach {settings.optipick_api_url}: {exc}; check OPTIPICK_API_URL and the network"
        return Check("API key", False, unreachable), Check("clock", False, "not compared: the API did not answer")
    finally:
        client.close()

    if status in (404, 422):
        key = Check("API key", True, f"accepted by {settings.optipick_api_url}")
    elif status in (401, 403):
        key = Check(
            "API key", False, f"refused (HTTP {status}): set OPTIPICK_API_KEY to a key from Settings → API Keys"
        )
    else:
        key = Check("API key", False, f"unexpected answer HTTP {status} from {settings.optipick_api_url}")
    return key, check_clock(server_time, now())


def check_clock(server_time: datetime | None, local_time: datetime) -> Check:
    if server_time is None:
        return Check("clock", True, "the API sent no Date header to compare with", warning=True)
    skew = (local_time - server_time).total_seconds()
    ahead = f"{abs(skew):.0f} s {'ahead of' if skew > 0 else 'behind'} the API's"
    if abs(skew) >= CLOCK_FAIL_SECONDS:
        return Check("clock", False, f"{ahead}: every signature will fail as too old or too new; enable NTP")
    if abs(skew) >= CLOCK_WARN_SECONDS:
        return Check("clock", True, f"{ahead}: signatures allow 5 min, but enable NTP", warning=True)
    return Check("clock", True, f"within {CLOCK_WARN_SECONDS} s of the API's")


def check_database(settings: Settings) -> Check:
    try:
        inbox = Inbox.open(settings.database_url)
    except ConfigError as exc:
        return Check("database", False, str(exc))
    except SQLAlchemyError as exc:
        return Check("database", False, f"cannot open DATABASE_URL: {type(exc).__name__}: {_first_line(exc)}")
    try:
        inbox.ping()
        count = inbox.count()
    finally:
        inbox.close()
    where = inbox.engine.url.render_as_string(hide_password=True)
    return Check("database", True, f"{where}: schema version {SCHEMA_VERSION}, {count} event(s)")


def check_queue(settings: Settings) -> Check:
    """The queue opens and answers. A SQLite queue file that cannot be used is only a warning: the
    service moves it aside when it starts (work_queue.set_aside_if_unusable), and the inbox holds every
    event it carried."""
    url = make_url(settings.queue_url)
    if url.get_backend_name() == "sqlite":
        reason = unusable_reason(Path(url.database or ""))
        if reason is not None:
            detail = (
                f"{url.database} cannot be used ({reason}): the service moves it aside and starts a new one "
                "when it starts; the inbox keeps every event"
            )
            return Check("queue", True, detail, warning=True)
    try:
        huey = create_huey(settings.queue_url)
        try:
            pending = huey.pending_count()
        finally:
            close_huey(huey)
    except Exception as exc:  # each queue backend raises its own errors
        return Check("queue", False, f"cannot open QUEUE_URL: {type(exc).__name__}: {_first_line(exc)}")
    return Check("queue", True, f"{type(huey).__name__}, {pending} task(s) waiting")


def check_results_dir(settings: Settings) -> Check:
    if settings.results_dir is None:
        return Check("results folder", True, "off (RESULTS_DIR is not set)")
    try:
        settings.results_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=settings.results_dir, prefix=".check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return Check("results folder", False, f"RESULTS_DIR={settings.results_dir} is not writable: {exc.strerror}")
    return Check("results folder", True, f"{settings.results_dir} is writable")


def check_handlers(settings: Settings) -> Check:
    try:
        build_registry(settings)
    except ConfigError as exc:
        return Check("handlers", False, str(exc))
    names = ", ".join(settings.handler_modules) or "none of your own"
    return Check("handlers", True, f"built-in handlers and {names}")


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
