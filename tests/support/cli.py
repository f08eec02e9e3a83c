"""The command line (main.py) in-process, with exactly the settings given, and reading what `events` prints."""

from click.testing import CliRunner, Result

from main import cli
from support.processes import config_env

# The columns of the `events` table, in order.
COLUMNS = ("received_at", "message_id", "status", "attempts", "type", "request_id", "last_error")


def run_cli(environ: dict[str, str], *args: str, **overrides: str) -> Result:
    """`python main.py …` in-process with exactly these settings (every other setting blank, no .env)."""
    return CliRunner().invoke(cli, list(args), env=config_env(environ, **overrides), catch_exceptions=False)


def run_events(environ: dict[str, str], *args: str) -> Result:
    """`python main.py events …` in-process, with exactly the settings of `environ` (no .env, no shell)."""
    result = CliRunner().invoke(cli, ["events", *args], env=config_env(environ))
    assert result.exit_code == 0, result.output
    return result


def table_rows(output: str) -> list[dict[str, str]]:
    """The `events` table's rows as column → cell, checking its header."""
    header, *lines = output.splitlines()
    assert header.split() == list(COLUMNS)
    # Every cell but the last is one word; last_error is the rest of the line.
    return [dict(zip(COLUMNS, line.split(None, len(COLUMNS) - 1), strict=True)) for line in lines]
