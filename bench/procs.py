"""The processes the bench starts (gunicorn, `python main.py`, `python main.py worker`, nginx), and their end.

Each one is started in a session of its own, so that stopping it reaches exactly its process group
(a gunicorn master and the workers it forked) and nothing else; `Processes` ends every one of them
when the run ends, normally, on an error or on Ctrl+C. They all listen on loopback ports found by
binding port 0, and read a complete environment, so a `.env` beside main.py changes nothing.
"""

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from config import SETTING_NAMES

PROJECT_DIR = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"

# Every variable config.load_settings reads. Each is passed, blank unless set: a blank value wins over
# .env and means "not set", so the bench measures the configuration it states and no other.
CONFIG_VARIABLES = SETTING_NAMES
PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def process_env(settings: Mapping[str, str]) -> dict[str, str]:
    """The whole environment of a started process: PATH and friends, every setting blank, then `settings`."""
    env = {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}
    env.update(dict.fromkeys(CONFIG_VARIABLES, ""))
    env.update(settings)
    env["PYTHONPATH"] = str(PROJECT_DIR)
    env["PYTHONUNBUFFERED"] = "1"
    return env


class Started:
    """One started process, its output in a log file."""

    def __init__(
        self, name: str, args: list[str], env: Mapping[str, str], log_path: Path, program: str = sys.executable
    ) -> None:
        self.name = name
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.popen = subprocess.Popen(  # noqa: S603 -- this project's programs with sys.executable, or nginx
                [program, *args],
                cwd=PROJECT_DIR,
                env=dict(env),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def __repr__(self) -> str:
        return f"<{self.name} pid {self.pid}>"

    def running(self) -> bool:
        return self.popen.poll() is None

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the processes of this one's group (a gunicorn master
        and its workers), read from /proc."""
        ticks = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:  # gone meanwhile
                continue
            if int(fields[2]) == self.popen.pid:  # fields[2] is the process group id
                ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")

    def log_tail(self, chars: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 15) -> None:
        """Send `signum` to this process's group, then SIGKILL the group if it is still there after `timeout`."""
        if self.running():
            self._signal_group(signum)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=timeout)
        # A gunicorn master that is gone may leave workers behind for a moment: the group goes too.
        self._signal_group(signal.SIGKILL)
        if self.running():
            self.popen.wait(timeout=10)

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signum)  # the group this process leads: started by us, nothing else


class Processes:
    """Starts processes and ends every one of them on `close()` (a context manager)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[Started] = []

    def __enter__(self) -> "Processes":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, name: str, args: list[str], settings: Mapping[str, str], program: str = sys.executable) -> Started:
        """Start `program` (this Python by default) with `args`, its output in a log file of the run's."""
        log_path = self.log_dir / f"{len(self.started) + 1:02d}-{name}.log"
        process = Started(name, args, process_env(settings), log_path, program)
        self.started.append(process)
        return process

    def close(self) -> None:
        for process in reversed(self.started):
            process.stop(timeout=5)
        self.started.clear()


def wait_until(condition: Callable[[], Any], what: str, timeout: float, watch: Sequence[Started] = ()) -> Any:
    """Poll `condition` until it returns something truthy (returned); raise when `timeout` seconds pass
    or a watched process exits."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        for process in watch:
            if not process.running():
                raise RuntimeError(f"{process} exited while waiting for {what}:\n{process.log_tail()}")
        if time.monotonic() > deadline:
            tails = "".join(f"\n--- {p} ---\n{p.log_tail()}" for p in watch)
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}{tails}")
        time.sleep(0.05)


def healthy(port: int) -> bool:
    """Whether GET /healthz on 127.0.0.1:`port` answers 200."""
    connection = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def wait_healthy(process: Started, port: int, timeout: float = 60) -> None:
    wait_until(lambda: healthy(port), f"{process} to answer /healthz", timeout, watch=[process])
