"""The processes the bench starts (gunicorn, `python main.py`, `python main.py worker`, nginx), and their end.

The tests' process helper (tests/support/processes.py) is the one home for this: each process in a
session of its own, so stopping it reaches exactly its process group (a gunicorn master and the
workers it forked); `Processes` ends every one when the run ends, normally, on an error or on Ctrl+C.
Everything listens on loopback ports found by binding port 0, and reads a complete environment (every
setting blank unless set), so a `.env` beside main.py changes nothing. Here: the bench's names for it.
"""

from tests.support.processes import HOST, PROJECT_DIR, Process, Processes, free_port, local_url, wait_until
from tests.support.processes import healthy as _healthy
from tests.support.processes import process_env as _process_env

Started = Process

__all__ = [
    "HOST",
    "PROJECT_DIR",
    "Processes",
    "Started",
    "free_port",
    "healthy",
    "process_env",
    "wait_healthy",
    "wait_until",
]


def process_env(settings: dict[str, str]) -> dict[str, str]:
    """The whole environment of a started process; only the project is importable (not tests/)."""
    return _process_env(settings, pythonpath=(PROJECT_DIR,))


def healthy(port: int) -> bool:
    """Whether GET /healthz on 127.0.0.1:`port` answers 200."""
    return _healthy(local_url(port))


def wait_healthy(process: Process, port: int, timeout: float = 60) -> None:
    process.wait_healthy(local_url(port), timeout)
