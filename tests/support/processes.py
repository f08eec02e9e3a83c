"""Running this project's programs (`python main.py …`, gunicorn) as subprocesses: for the tests and the bench.

Every process reads a complete environment: each setting config.py reads is passed, blank unless
given (a blank value wins over a `.env` beside main.py and means "not set"), so a process runs with the
settings it is given and no others. It starts in the project directory with the project and tests/ on
its PYTHONPATH (so HANDLER_MODULES and gunicorn can name `support.…` modules), listens on a loopback port
found by binding port 0, and writes its output to a log file. `Process(…, new_session=True)` starts it
in a session of its own, so that signalling or stopping it reaches exactly its process group (a gunicorn
master and the workers it forked) and nothing else; `die_with_parent=True` (Linux) has the kernel
SIGKILL it should the thread that started it end first, so nothing outlives a test run killed outright.

The bench can import this module as `tests.support.processes` from the project root: it imports nothing
from the tests (no conftest, no other support module), only the standard library and config.py.
"""

import contextlib
import http.client
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from signal import SIGKILL, SIGTERM
from typing import Any
from urllib.parse import urlsplit

from config import SETTING_NAMES

PROJECT_DIR = Path(__file__).resolve().parents[2]
TESTS_DIR = PROJECT_DIR / "tests"
HOST = "127.0.0.1"

# Every variable config.load_settings reads: each is passed, blank when not given.
CONFIG_VARIABLES = SETTING_NAMES
# What a Python process needs from the outer environment; nothing else leaks in.
PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ", "SYSTEMROOT")
# The project first (the service's modules), then tests/ (the `support` package).
PYTHONPATH = (PROJECT_DIR, TESTS_DIR)

# Runs first in a process started with die_with_parent, then becomes the real program (exec keeps the
# pid): on Linux it asks the kernel to SIGKILL the process when the thread that started it ends.
DIE_WITH_PARENT = """
import ctypes, os, signal, sys
if sys.platform == "linux":
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() != int(sys.argv[1]):  # the parent ended before the line above
        os._exit(1)
os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
"""


class WaitFailed(AssertionError):
    """A wait that gave up: it timed out, or a process it watched exited. A failed assertion in a test."""


def config_env(environ: Mapping[str, str], **overrides: str) -> dict[str, str]:
    """Every setting blank, then `environ`, then `overrides`: the settings meant, and no others."""
    env = dict.fromkeys(CONFIG_VARIABLES, "")
    env.update(environ)
    env.update(overrides)
    return env


def process_env(
    environ: Mapping[str, str], *, pythonpath: Sequence[Path | str] = PYTHONPATH, **overrides: str
) -> dict[str, str]:
    """The whole environment of a started process: PATH and friends, config_env(environ, **overrides),
    PYTHONPATH (the project and tests/ by default) and unbuffered output."""
    env = {name: os.environ[name] for name in PASSED_THROUGH if name in os.environ}
    env.update(config_env(environ, **overrides))
    env["PYTHONPATH"] = os.pathsep.join(str(path) for path in pythonpath)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def free_port() -> int:
    """A loopback port that was free a moment ago (bound to port 0, then let go)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def local_url(port: int) -> str:
    return f"http://{HOST}:{port}"


def healthy(base_url: str) -> bool:
    """Whether GET `base_url`/healthz answers 200 (False while nothing listens, or gunicorn's workers boot)."""
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname or HOST, parts.port or 80, timeout=2)
    try:
        connection.request("GET", parts.path.rstrip("/") + "/healthz")
        return connection.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        connection.close()


def wait_until(
    condition: Callable[[], Any], what: str, timeout: float = 30, watch: "Sequence[Process] | None" = None
) -> Any:
    """Poll `condition` until it returns something truthy (returned) or `timeout` seconds pass (WaitFailed).

    Fails at once when a watched process exits meanwhile, with its log.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        for process in watch or ():
            if not process.running():
                raise WaitFailed(
                    f"{process} exited ({process.popen.returncode}) while waiting for {what}\n{process.log_tail()}"
                )
        if time.monotonic() > deadline:
            logs = "".join(f"\n--- {p} ---\n{p.log_tail()}" for p in watch or ())
            raise WaitFailed(f"timed out after {timeout:g} s waiting for {what}{logs}")
        time.sleep(0.05)


class Process:
    """`python <args>` started in the project directory, its output (stdout and stderr) in a log file."""

    def __init__(
        self,
        args: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        *,
        name: str | None = None,
        new_session: bool = False,
        die_with_parent: bool = False,
        program: str = sys.executable,
        cwd: Path = PROJECT_DIR,
    ) -> None:
        self.args = list(args)
        self.name = name or " ".join(self.args)
        self.log_path = log_path
        self.new_session = new_session
        command = [program, *self.args]  # this Python by default; the bench also starts nginx
        if die_with_parent:
            command = [sys.executable, "-c", DIE_WITH_PARENT, str(os.getpid()), *self.args]
        with open(log_path, "ab") as log:  # the log file descriptor is inherited, so ours can close
            self.popen = subprocess.Popen(
                command,
                cwd=cwd,
                env=dict(env),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=new_session,
            )
        self.pid = self.popen.pid
        self.started = time.monotonic()

    def __repr__(self) -> str:
        return f"<{self.name} pid {self.pid}>"

    def running(self) -> bool:
        return self.popen.poll() is None

    def age(self) -> float:
        """Seconds since it was started."""
        return time.monotonic() - self.started

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log()[-chars:]
        except OSError:
            return ""

    def wait_healthy(self, base_url: str, timeout: float = 30) -> None:
        """Wait for GET /healthz on `base_url` to answer 200; fail at once should this process exit."""
        wait_until(lambda: healthy(base_url), f"{base_url}/healthz to answer 200", timeout, watch=[self])

    def signal(self, signum: int) -> None:
        """Send `signum` to this process alone."""
        self.popen.send_signal(signum)

    def signal_group(self, signum: int) -> None:
        """Send `signum` to this process's group when it leads one (new_session), else to the process."""
        with contextlib.suppress(ProcessLookupError):
            if self.new_session:
                os.killpg(self.pid, signum)  # the group this process leads: started by us, nothing else
            else:
                self.popen.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL (its whole group, when it leads one): no clean-up of any kind, as in a crash or an OOM kill."""
        self.signal_group(SIGKILL)
        self.popen.wait(timeout=10)

    def wait(self, timeout: float = 30) -> int:
        """Its exit code, once it has exited; WaitFailed when it is still running after `timeout` seconds."""
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise WaitFailed(f"{self} did not exit within {timeout:g} s\n{self.log_tail()}") from None

    def stop(self, signum: int = SIGTERM, timeout: float = 15) -> None:
        """Make sure it is gone: `signum` (to its group, when it leads one), then SIGKILL after `timeout` s."""
        if self.running():
            self.signal_group(signum)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout=timeout)
        # A gunicorn master that is gone may leave workers behind for a moment: its group goes too.
        if self.running() or self.new_session:
            self.signal_group(SIGKILL)
        if self.running():
            self.popen.wait(timeout=10)

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the processes of the group it leads (a gunicorn master
        and its workers; new_session), read from /proc."""
        ticks = 0
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rpartition(")")[2].split()
            except OSError:  # gone meanwhile
                continue
            if int(fields[2]) == self.pid:  # fields[2] is the process group id
                ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")


class Processes:
    """Starts processes, each in a session of its own, and ends every one of them on `close()` (a context
    manager): normally, on an error or on Ctrl+C."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[Process] = []

    def __enter__(self) -> "Processes":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(
        self, name: str, args: Sequence[str], settings: Mapping[str, str], program: str = sys.executable
    ) -> Process:
        """`python <args>` (or `program <args>`) with exactly `settings` (process_env), logged to
        <log_dir>/<nn>-<name>.log."""
        log_path = self.log_dir / f"{len(self.started) + 1:02d}-{name}.log"
        process = Process(args, process_env(settings), log_path, name=name, new_session=True, program=program)
        self.started.append(process)
        return process

    def close(self) -> None:
        for process in reversed(self.started):
            process.stop(timeout=5)
        self.started.clear()


Launch = Callable[..., Process]  # the type of conftest's `launch` fixture
