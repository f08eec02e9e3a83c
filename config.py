"""Settings: read once from the environment and an optional `.env` file, checked, then frozen.

A missing or malformed setting raises ConfigError with one line that names the variable and the fix.
The webhook secrets and the API key are kept out of the settings' repr, so logging the settings
(or a traceback that shows them) leaks nothing.
"""

import base64
import binascii
import ipaddress
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from dotenv import dotenv_values
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

import defaults
from errors import ConfigError
from event_types import EventType
from printable import PrintableTracebacks

# Every environment variable the service reads (documented in .env.example and the README).
SETTING_NAMES = (
    "WEBHOOK_SECRET",
    "OPTIPICK_API_KEY",
    "OPTIPICK_API_URL",
    "DATABASE_URL",
    "QUEUE_URL",
    "HOST",
    "PORT",
    "RESULTS_DIR",
    "MAX_BODY_BYTES",
    "MAX_RESULT_BYTES",
    "WEBHOOK_DEFAULT_EVENT_TYPE",
    "LOG_LEVEL",
    "MAX_ATTEMPTS",
    "WORKER_THREADS",
    "LEASE_SECONDS",
    "SHUTDOWN_GRACE_SECONDS",
    "ACK_DEADLINE_SECONDS",
    "PRUNE_AFTER_DAYS",
    "HANDLER_MODULES",
)
SECRET_PREFIX = "whsec_"  # noqa: S105 -- the prefix every signing secret starts with, not a secret
SUPPORTED_DATABASES = ("sqlite", "postgresql")
SUPPORTED_QUEUES = ("sqlite", "postgresql", "redis", "rediss")
# The PostgreSQL driver requirements.txt installs: psycopg 3. A URL without a driver (postgresql://…)
# means it too (SQLAlchemy alone would look for psycopg2, which is not installed).
POSTGRES_DRIVER = "psycopg"
# For the error messages: what each URL is, its SQLite file, and examples of every kind.
STORAGE_URLS = {
    "DATABASE_URL": (
        "database",
        "sqlite:///instance/inbox.db",
        "sqlite:///instance/inbox.db or postgresql+psycopg://user:password@host:5432/dbname",
    ),
    "QUEUE_URL": (
        "queue",
        "sqlite:///instance/queue.db",
        "sqlite:///instance/queue.db, redis://host:6379/0 or postgresql+psycopg://user:password@host:5432/dbname",
    ),
}


@dataclass(frozen=True)
class Settings:
    webhook_secrets: tuple[str, ...] = field(repr=False)
    optipick_api_key: str = field(repr=False)
    optipick_api_url: str = defaults.OPTIPICK_API_URL
    database_url: str = defaults.DATABASE_URL
    queue_url: str = defaults.QUEUE_URL
    host: str = defaults.HOST
    port: int = defaults.PORT
    results_dir: Path | None = None
    max_body_bytes: int = defaults.MAX_BODY_BYTES
    max_result_bytes: int = defaults.MAX_RESULT_BYTES
    default_event_type: EventType | None = None
    log_level: str = defaults.LOG_LEVEL
    max_attempts: int = defaults.MAX_ATTEMPTS
    worker_threads: int = defaults.WORKER_THREADS
    lease_seconds: int = defaults.LEASE_SECONDS
    shutdown_grace: int = defaults.SHUTDOWN_GRACE_SECONDS
    ack_deadline: float = defaults.ACK_DEADLINE_SECONDS
    prune_after_days: int | None = None
    handler_modules: tuple[str, ...] = ()


def load_settings(
    environ: Mapping[str, str] | None = None, env_file: Path | None = defaults.PROJECT_DIR / ".env"
) -> Settings:
    """Build Settings from `env_file` overlaid by `environ` (the process environment by default)."""
    values: dict[str, str] = {}
    if env_file is not None and env_file.is_file():
        values.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    values.update(os.environ if environ is None else environ)
    env = {k: v.strip() for k, v in values.items()}

    def get(name: str) -> str | None:
        return env.get(name) or None

    return Settings(
        webhook_secrets=parse_secrets(get("WEBHOOK_SECRET")),
        optipick_api_key=parse_api_key(get("OPTIPICK_API_KEY")),
        optipick_api_url=parse_api_url(get("OPTIPICK_API_URL") or defaults.OPTIPICK_API_URL),
        database_url=parse_database_url(get("DATABASE_URL") or defaults.DATABASE_URL),
        queue_url=parse_queue_url(get("QUEUE_URL") or defaults.QUEUE_URL),
        host=get("HOST") or defaults.HOST,
        port=parse_int("PORT", get("PORT"), defaults.PORT, minimum=1, maximum=65535),
        results_dir=parse_results_dir(get("RESULTS_DIR")),
        max_body_bytes=parse_int("MAX_BODY_BYTES", get("MAX_BODY_BYTES"), defaults.MAX_BODY_BYTES, minimum=1024),
        max_result_bytes=parse_int(
            "MAX_RESULT_BYTES", get("MAX_RESULT_BYTES"), defaults.MAX_RESULT_BYTES, minimum=1024
        ),
        default_event_type=parse_default_event_type(get("WEBHOOK_DEFAULT_EVENT_TYPE")),
        log_level=parse_log_level(get("LOG_LEVEL") or defaults.LOG_LEVEL),
        max_attempts=parse_int("MAX_ATTEMPTS", get("MAX_ATTEMPTS"), defaults.MAX_ATTEMPTS, minimum=1),
        worker_threads=parse_int("WORKER_THREADS", get("WORKER_THREADS"), defaults.WORKER_THREADS, minimum=1),
        lease_seconds=parse_int("LEASE_SECONDS", get("LEASE_SECONDS"), defaults.LEASE_SECONDS, minimum=1),
        shutdown_grace=parse_int(
            "SHUTDOWN_GRACE_SECONDS", get("SHUTDOWN_GRACE_SECONDS"), defaults.SHUTDOWN_GRACE_SECONDS, minimum=0
        ),
        ack_deadline=parse_ack_deadline(get("ACK_DEADLINE_SECONDS")),
        prune_after_days=parse_prune_after_days(get("PRUNE_AFTER_DAYS")),
        handler_modules=tuple(split_list(get("HANDLER_MODULES") or "")),
    )


def configure_logging(level: str) -> None:
    """One log format for every entry point (python main.py, the worker, gunicorn), whose tracebacks
    show their exceptions' texts printable."""
    handler = logging.StreamHandler()
    handler.setFormatter(PrintableTracebacks("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    logging.basicConfig(level=level, handlers=[handler])
    if level != "DEBUG":
        # Huey logs every task start and finish at INFO; the processor logs each outcome already.
        logging.getLogger("huey").setLevel(logging.WARNING)


def ensure_parent_folder(setting: str, path: Path) -> None:
    """Create the folder of a SQLite file, or say in one line which setting points where it cannot be."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{setting} points at {path}, whose folder cannot be created: {exc.strerror}") from None


def split_list(value: str) -> list[str]:
    return [item for item in re.split(r"[\s,]+", value) if item]


def parse_secrets(value: str | None) -> tuple[str, ...]:
    """One or more `whsec_…` secrets, separated by spaces or commas (several during a rotation)."""
    if not value:
        raise ConfigError(
            "WEBHOOK_SECRET is not set: copy the signing secret (whsec_…) from the endpoint's page in the "
            "webhook dashboard, or from `svix listen`'s output"
        )
    secrets = split_list(value)
    for position, secret in enumerate(secrets, start=1):
        where = f"WEBHOOK_SECRET (secret {position} of {len(secrets)})" if len(secrets) > 1 else "WEBHOOK_SECRET"
        if secret[:1] in "\"'" or secret[-1:] in "\"'":
            raise ConfigError(f"{where} is wrapped in quotes: remove them")
        if secret.startswith("whpk_"):
            raise ConfigError(f"{where} is a public key (whpk_…): use the endpoint's signing secret (whsec_…)")
        if not secret.startswith(SECRET_PREFIX):
            raise ConfigError(f"{where} does not start with '{SECRET_PREFIX}': copy the whole signing secret")
        key = secret[len(SECRET_PREFIX) :]
        try:
            # Strict: the svix library silently drops stray characters, which would give a wrong key.
            decoded = base64.b64decode(key + "=" * (-len(key) % 4), validate=True)
        except binascii.Error:
            decoded = b""
        if not decoded:
            raise ConfigError(
                f"{where} is not valid base64 after '{SECRET_PREFIX}': copy it again from the endpoint's page"
            )
    return tuple(secrets)


def parse_api_key(value: str | None) -> str:
    if not value:
        raise ConfigError("OPTIPICK_API_KEY is not set: create a key in the OptiPick web app under Settings → API Keys")
    if any(ch.isspace() for ch in value) or value[0] in "\"'":
        raise ConfigError("OPTIPICK_API_KEY contains spaces or quotes: paste the key alone")
    return value


def parse_api_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(f"OPTIPICK_API_URL must be a base URL such as {defaults.OPTIPICK_API_URL}, not {value!r}")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise ConfigError(
            "OPTIPICK_API_URL must use https:// so the API key travels encrypted "
            "(plain http is accepted only for a local stand-in on localhost)"
        )
    return value.rstrip("/")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def parse_database_url(value: str) -> str:
    return _parse_storage_url("DATABASE_URL", value, SUPPORTED_DATABASES)


def parse_queue_url(value: str) -> str:
    """sqlite:///file (one host), redis:// or rediss:// (RedisHuey), postgresql[+psycopg]:// (PostgresHuey)."""
    return _parse_storage_url("QUEUE_URL", value, SUPPORTED_QUEUES)


def _parse_storage_url(name: str, value: str, supported: tuple[str, ...]) -> str:
    """Check a DATABASE_URL or QUEUE_URL; a PostgreSQL URL comes back naming its driver (psycopg)."""
    noun, sqlite_example, example = STORAGE_URLS[name]
    try:
        url = make_url(value)
    except ArgumentError:
        raise ConfigError(f"{name} is not a {noun} URL (for example {example})") from None
    backend = url.get_backend_name()
    if backend not in supported:
        raise ConfigError(f"{name} uses {backend!r}; supported: {', '.join(supported)} (for example {example})")
    if backend == "sqlite" and not url.database:
        raise ConfigError(f"{name} needs a file path, such as {sqlite_example}")
    if backend == "postgresql":
        driver = url.drivername.partition("+")[2]
        if driver not in ("", POSTGRES_DRIVER):
            raise ConfigError(
                f"{name} names the driver {driver!r}, which is not installed: "
                f"write postgresql+{POSTGRES_DRIVER}://… (psycopg 3)"
            )
        if not driver:
            return f"postgresql+{POSTGRES_DRIVER}" + value.strip()[len(url.drivername) :]
    if backend in ("redis", "rediss") and url.database and not url.database.isdigit():
        raise ConfigError(f"{name} must end in a database number, such as redis://host:6379/0, not /{url.database}")
    return value


def parse_results_dir(value: str | None) -> Path | None:
    return Path(value).expanduser() if value else None


def parse_default_event_type(value: str | None) -> EventType | None:
    if not value:
        return None
    event_type = EventType.parse(value)
    if event_type is None:
        raise ConfigError(
            f"WEBHOOK_DEFAULT_EVENT_TYPE={value!r} is not an OptiPick event type: use route.optimized, "
            "cluster.optimized or a warehouse-specific type such as route.optimized.<warehouse>.<user id>"
        )
    return event_type


def parse_prune_after_days(value: str | None) -> int | None:
    if value is None:
        return None
    return parse_int("PRUNE_AFTER_DAYS", value, 0, minimum=defaults.PRUNE_MINIMUM_DAYS, maximum=defaults.MAX_AGE_DAYS)


def parse_ack_deadline(value: str | None) -> float:
    """Seconds, whole or not, from 1 up to ACK_DEADLINE_LIMIT: Svix gives up on an answer after 15 s."""
    if value is None:
        return defaults.ACK_DEADLINE_SECONDS
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigError(f"ACK_DEADLINE_SECONDS={value!r} is not a number of seconds, such as 10") from None
    if not 1 <= seconds <= defaults.ACK_DEADLINE_LIMIT:  # NaN fails this too
        raise ConfigError(
            f"ACK_DEADLINE_SECONDS={value} is out of range: use 1 to {defaults.ACK_DEADLINE_LIMIT} seconds, "
            "below the 15 s after which Svix counts a delivery as failed"
        )
    return seconds


def parse_log_level(value: str) -> str:
    level = value.upper()
    if level not in logging.getLevelNamesMapping():
        raise ConfigError(f"LOG_LEVEL={value!r} is not a level: use DEBUG, INFO, WARNING or ERROR")
    return level


def parse_int(name: str, value: str | None, default: int, *, minimum: int, maximum: int | None = None) -> int:
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a whole number") from None
    if number < minimum or (maximum is not None and number > maximum):
        limit = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise ConfigError(f"{name}={number} is out of range: use a value {limit}")
    return number
