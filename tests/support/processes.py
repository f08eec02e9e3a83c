"""Running the real program (`python main.py …`, gunicorn) as subprocesses, for the slow tests and the CLI tests."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import requests

from config import SETTING_NAMES

PROJECT_DIR = Path(__file__).resolve().parents[2]
TESTS_DIR = PROJECT_DIR / "tests"

# Every variable config.load_settings reads. Each is passed (blank when the test does not set it), so a
# stray .env beside main.py cannot fill one in: a blank value wins over the file and means "not set".
CONFIG_VARIABLES = SETTING_NAMES
# What a Python process needs from the outer environment; nothing else leaks in.
PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ", "SYSTEMROOT")


def config_env(environ: Mapping[str, str], **overrides: str) -> dict[str, str]:
    """Every setting blank, then `environ`, then `overrides`: the settings a test means, and no others."""
    env = dict.fromkeys(CONFIG_VARIABLES, "")
    env.update(environ)
    env.update(overrides)
    return env


def process_env(environ: Mapping[str, str], **overrides: str) -> dict[str, str]:
    """The whole environment of a subprocess: config_env plus PATH and friends, with the project and tests/
    importable (so HANDLER_MODULES and gunicorn can name `support.…` modules)."""
    env = {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}
    env.update(config_env(environ, **overrides))
    env["PYTHONPATH"] = os.pathsep.join((str(PROJECT_DIR), str(TESTS_DIR)))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(
    condition: Callable[[], Any], what: str, timeout: float = 30, watch: "list[Process] | None" = None
) -> Any:
    """Poll `condition` until it returns something truthy (returned) or `timeout` seconds pass (a failure).

    Fails at once when a watched process exits meanwhile, with its log.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        for process in watch or ():
            if process.popen.poll() is not None:
                raise AssertionError(f"{process} exited ({process.popen.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            logs = "".join(f"\n--- {p} ---\n{p.log()[-3000:]}" for p in watch or ())
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{logs}")
        time.sleep(0.05)


class Process:
    """A subprocess started in the project directory, its output going to a log file."""

    def __init__(self, args: list[str], env: Mapping[str, str], log_path: Path) -> None:
        self.args = args
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.popen = subprocess.Popen(  # the log file descriptor is inherited, so ours can close
                [sys.executable, *args], cwd=PROJECT_DIR, env=dict(env), stdout=log, stderr=subprocess.STDOUT
            )

    def __repr__(self) -> str:
        return f"<{' '.join(self.args)} pid {self.popen.pid}>"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def running(self) -> bool:
        return self.popen.poll() is None

    def wait_healthy(self, base_url: str, timeout: float = 30) -> None:
        def healthy() -> bool:
            try:
                return requests.get(f"{base_url}/healthz", timeout=2).status_code == 200
            except requests.RequestException:  # not listening yet, or (gunicorn) listening while workers boot
                return False

        wait_until(healthy, f"{base_url}/healthz to answer 200", timeout, watch=[self])

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as in a crash or an OOM kill."""
        self.popen.kill()
        self.popen.wait(timeout=10)

    def signal(self, signum: int) -> None:
        self.popen.send_signal(signum)

    def wait(self, timeout: float = 30) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self} did not exit within {timeout} s\n{self.log()[-3000:]}") from None

    def stop(self) -> None:
        """Make sure the process is gone: SIGTERM, then SIGKILL after a few seconds."""
        if self.popen.poll() is not None:
            return
        self.popen.send_signal(signal.SIGTERM)
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)


Launch = Callable[..., Process]  # the type of conftest's `launch` fixture
