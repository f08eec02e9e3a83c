"""Settings: defaults, every setting read, and one clear line for each bad value."""

from pathlib import Path

import pytest
from support.cli import run_cli
from support.standin import API_KEY

import defaults
from config import load_settings
from errors import ConfigError
from event_types import EventType, Kind
from signatures import new_secret


def minimal(**extra: str) -> dict[str, str]:
    return {"WEBHOOK_SECRET": new_secret(), "OPTIPICK_API_KEY": API_KEY, **extra}


def test_defaults_apply_when_only_the_required_settings_are_given():
    """With only the secret and the key, every other setting takes its documented default."""
    settings = load_settings(minimal(), env_file=None)
    assert settings.optipick_api_url == defaults.OPTIPICK_API_URL
    assert settings.database_url == defaults.DATABASE_URL
    assert settings.queue_url == defaults.QUEUE_URL
    assert (settings.host, settings.port) == ("127.0.0.1", 5000)
    assert settings.results_dir is None
    assert settings.max_body_bytes == defaults.MAX_BODY_BYTES > 1024 * 1024
    assert settings.default_event_type is None
    assert settings.log_level == "INFO"
    assert settings.handler_modules == ()


def test_every_setting_is_read(tmp_path: Path):
    """Each documented variable reaches its field."""
    first, second = new_secret(), new_secret()
    settings = load_settings(
        {
            "WEBHOOK_SECRET": f"{first}, {second}",
            "OPTIPICK_API_KEY": API_KEY,
            "OPTIPICK_API_URL": "https://api.example.com/",
            "DATABASE_URL": f"sqlite:///{tmp_path}/a.db",
            "QUEUE_URL": f"sqlite:///{tmp_path}/q.db",
            "HOST": "192.0.2.10",
            "PORT": "8080",
            "RESULTS_DIR": str(tmp_path / "out"),
            "MAX_BODY_BYTES": "2048",
            "WEBHOOK_DEFAULT_EVENT_TYPE": "cluster.optimized.Example.673f48095739843f4de65ec9",
            "LOG_LEVEL": "debug",
            "MAX_ATTEMPTS": "3",
            "WORKER_THREADS": "2",
            "LEASE_SECONDS": "30",
            "HANDLER_MODULES": "one two,three",
        },
        env_file=None,
    )
    assert settings.webhook_secrets == (first, second)
    assert settings.optipick_api_url == "https://api.example.com"  # trailing slash stripped
    assert settings.database_url == f"sqlite:///{tmp_path}/a.db"
    assert settings.queue_url == f"sqlite:///{tmp_path}/q.db"
    assert (settings.host, settings.port) == ("192.0.2.10", 8080)
    assert settings.results_dir == tmp_path / "out"
    assert settings.max_body_bytes == 2048
    assert settings.default_event_type == EventType(Kind.CLUSTER, "Example", "673f48095739843f4de65ec9")
    assert settings.log_level == "DEBUG"
    assert (settings.max_attempts, settings.worker_threads, settings.lease_seconds) == (3, 2, 30)
    assert settings.handler_modules == ("one", "two", "three")


def test_env_file_is_read_and_the_environment_wins(tmp_path: Path):
    """A .env file supplies settings; a variable set in the environment overrides it."""
    env_file = tmp_path / ".env"
    env_file.write_text(f"WEBHOOK_SECRET={new_secret()}\nOPTIPICK_API_KEY=from-file\nPORT=6000\n")
    settings = load_settings({"PORT": "7000"}, env_file=env_file)
    assert settings.optipick_api_key == "from-file"
    assert settings.port == 7000


def test_secrets_and_key_stay_out_of_the_repr():
    """Printing or logging the settings shows neither the webhook secret nor the API key."""
    environ = minimal()
    text = repr(load_settings(environ, env_file=None))
    assert environ["WEBHOOK_SECRET"] not in text
    assert environ["WEBHOOK_SECRET"].removeprefix("whsec_") not in text
    assert API_KEY not in text


@pytest.mark.parametrize(
    ("overrides", "named", "hint"),
    [
        ({"WEBHOOK_SECRET": ""}, "WEBHOOK_SECRET", "is not set"),
        ({"WEBHOOK_SECRET": "whsec_!!!not-base64!!!"}, "WEBHOOK_SECRET", "not valid base64 after 'whsec_'"),
        ({"WEBHOOK_SECRET": "whsec_"}, "WEBHOOK_SECRET", "not valid base64"),
        ({"WEBHOOK_SECRET": "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, "WEBHOOK_SECRET", "does not start with 'whsec_'"),
        ({"WEBHOOK_SECRET": '"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"'}, "WEBHOOK_SECRET", "quotes"),
        ({"WEBHOOK_SECRET": "whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4="}, "WEBHOOK_SECRET", "public key"),
        (
            {"WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw whsec_%%%"},
            "WEBHOOK_SECRET (secret 2 of 2)",
            "base64",
        ),
        ({"OPTIPICK_API_KEY": ""}, "OPTIPICK_API_KEY", "Settings → API Keys"),
        ({"OPTIPICK_API_KEY": "two words"}, "OPTIPICK_API_KEY", "spaces or quotes"),
        ({"OPTIPICK_API_URL": "http://api.example.com"}, "OPTIPICK_API_URL", "https://"),
        ({"OPTIPICK_API_URL": "ftp://api.example.com"}, "OPTIPICK_API_URL", "base URL"),
        ({"OPTIPICK_API_URL": "https://api.example.com/?x=1"}, "OPTIPICK_API_URL", "base URL"),
        ({"DATABASE_URL": "not a url"}, "DATABASE_URL", "not a database URL"),
        ({"DATABASE_URL": "mysql://localhost/x"}, "DATABASE_URL", "supported"),
        ({"QUEUE_URL": "amqp://localhost:5672"}, "QUEUE_URL", "supported"),
        ({"PORT": "eighty"}, "PORT", "whole number"),
        ({"PORT": "70000"}, "PORT", "between 1 and 65535"),
        ({"MAX_BODY_BYTES": "10"}, "MAX_BODY_BYTES", "at least"),
        ({"MAX_ATTEMPTS": "0"}, "MAX_ATTEMPTS", "at least 1"),
        ({"WEBHOOK_DEFAULT_EVENT_TYPE": "order.created"}, "WEBHOOK_DEFAULT_EVENT_TYPE", "not an OptiPick event type"),
        ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL", "not a level"),
    ],
)
def test_a_bad_setting_names_the_variable_and_the_fix(overrides, named, hint):
    """Each malformed or missing setting stops start-up with one line naming the variable and the fix."""
    with pytest.raises(ConfigError) as raised:
        load_settings({**minimal(), **overrides}, env_file=None)
    message = str(raised.value)
    assert message.startswith(named) or f"{named}=" in message
    assert hint in message
    assert "\n" not in message
    assert API_KEY not in message


def test_a_rejected_secret_is_not_echoed():
    """The error for a malformed secret does not repeat the secret."""
    bad = "whsec_abc$def" + "x" * 20
    with pytest.raises(ConfigError) as raised:
        load_settings(minimal(WEBHOOK_SECRET=bad), env_file=None)
    assert "abc$def" not in str(raised.value)


def test_plain_http_is_accepted_for_a_local_stand_in():
    """http:// is allowed for loopback hosts only, so the stand-in API can be used locally."""
    for url in ("http://127.0.0.1:8000", "http://localhost:8000/", "http://[::1]:8000"):
        assert load_settings(minimal(OPTIPICK_API_URL=url), env_file=None).optipick_api_url == url.rstrip("/")


def test_every_setting_is_documented():
    """config.SETTING_NAMES is exactly what config.py reads, and each is in .env.example and the README."""
    import re

    from config import SETTING_NAMES

    project = Path(__file__).resolve().parent.parent
    read = set(re.findall(r'get\("([A-Z_]+)"\)', (project / "config.py").read_text()))
    example = set(re.findall(r"^#? ?([A-Z_]+)=", (project / ".env.example").read_text(), re.MULTILINE))
    readme = set(re.findall(r"^\| `([A-Z_]+)` \|", (project / "README.md").read_text(), re.MULTILINE))
    assert read == set(SETTING_NAMES)
    assert read <= example, read - example
    assert read <= readme, read - readme


# DATABASE_URL and QUEUE_URL -----------------------------------------------------------------


def settings_with(**values: str):
    return load_settings(minimal(**values), env_file=None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("rediss://:pw@cache.internal:6380/2", "rediss://:pw@cache.internal:6380/2"),
        ("redis://cache.internal", "redis://cache.internal"),
        ("postgresql+psycopg://app@db.internal/app", "postgresql+psycopg://app@db.internal/app"),
        ("postgresql://app@db.internal:5432/app", "postgresql+psycopg://app@db.internal:5432/app"),
    ],
)
def test_queue_url_accepts_redis_and_postgresql(value, expected):
    """QUEUE_URL takes redis://, rediss:// and postgresql:// URLs; a PostgreSQL one is read with psycopg."""
    assert settings_with(QUEUE_URL=value).queue_url == expected


def test_database_url_without_a_driver_means_psycopg():
    """DATABASE_URL=postgresql://… uses psycopg 3, the driver that is installed."""
    assert settings_with(DATABASE_URL="postgresql://app@db/app").database_url == "postgresql+psycopg://app@db/app"


@pytest.mark.parametrize(
    ("overrides", "hint"),
    [
        ({"QUEUE_URL": "amqp://guest@localhost//"}, "supported: sqlite, postgresql, redis, rediss"),
        ({"QUEUE_URL": "mysql://localhost/queue"}, "supported: sqlite, postgresql, redis, rediss"),
        ({"QUEUE_URL": "postgres://app@db/app"}, "supported"),
        ({"QUEUE_URL": "postgresql+psycopg2://app@db/app"}, "postgresql+psycopg://"),
        ({"QUEUE_URL": "redis://localhost:6379/queue"}, "database number"),
        ({"QUEUE_URL": "::not a url::"}, "not a queue URL"),
        ({"QUEUE_URL": "sqlite://"}, "file path"),
        ({"DATABASE_URL": "redis://localhost:6379/0"}, "supported: sqlite, postgresql"),
        ({"DATABASE_URL": "postgresql+asyncpg://app@db/app"}, "postgresql+psycopg://"),
    ],
)
def test_an_unusable_queue_or_database_url_is_one_line_naming_it(overrides, hint):
    """A QUEUE_URL or DATABASE_URL that is none of the supported kinds stops start-up with one line naming it."""
    [name] = overrides
    with pytest.raises(ConfigError) as raised:
        settings_with(**overrides)
    message = str(raised.value)
    assert message.startswith(name)
    assert hint in message
    assert "\n" not in message


def test_prune_after_days_below_two_is_refused(environ):
    """PRUNE_AFTER_DAYS=1 is a configuration error naming the variable, in the settings and on the command line."""
    with pytest.raises(ConfigError, match="PRUNE_AFTER_DAYS"):
        load_settings({**environ, "PRUNE_AFTER_DAYS": "1"}, env_file=None)
    result = run_cli(environ, "prune", PRUNE_AFTER_DAYS="1")
    assert result.exit_code == 2
    assert result.stderr.startswith("configuration error: PRUNE_AFTER_DAYS")
