"""What the crash suite's test-only code inside the receiver's processes shares (crash_app.py under gunicorn,
crash_handler.py in `python main.py worker`): which deliveries and optimizations the test chose to kill at,
killing at each at most once, and a log of every self-inflicted kill, all in files under CRASH_DIR, so the
test can read them after the processes are dead.

Standard library only: it is imported by the processes under test and must not change what they load.
"""

import functools
import os
import signal
import time
from pathlib import Path

COMPLETIONS = "completions"  # one line per handler call that finished: <kind> <request_id> <msg_id> <pid>
KILLS = "kills"  # one line per self-inflicted kill: <kind> <key> <pid> <unix time>
MARKERS = "markers"  # one empty file per kill point already used
# The test's choices, one key a line: svix-ids (the web process dies after storing the delivery, before it
# answers) and <kind>-<request_id> of optimizations (the worker dies in the middle of the handler, or just
# after it finished).
CHOSEN_WEB = "chosen-web-after-commit"
CHOSEN_HANDLER_MID = "chosen-handler-mid"
CHOSEN_HANDLER_AFTER = "chosen-handler-after"


def crash_dir() -> Path:
    return Path(os.environ["CRASH_DIR"])


@functools.cache
def chosen(name: str) -> frozenset[str]:
    """The keys the test chose for kill point `name` (none when it wrote no such file)."""
    try:
        return frozenset((crash_dir() / name).read_text().split())
    except FileNotFoundError:
        return frozenset()


def write_chosen(directory: Path, name: str, keys: list[str]) -> None:
    (directory / name).write_text("".join(f"{key}\n" for key in keys))


def first_time(name: str) -> bool:
    """True for exactly one caller per `name`, across processes (an O_EXCL create)."""
    try:
        fd = os.open(crash_dir() / MARKERS / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def append_line(file_name: str, line: str) -> None:
    """One write() with O_APPEND, so lines from several processes and threads never interleave."""
    fd = os.open(crash_dir() / file_name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def kill_self(kind: str, key: str) -> None:
    """Record the kill, then SIGKILL this process: no clean-up of any kind, as in a crash or an OOM kill."""
    append_line(KILLS, f"{kind} {key} {os.getpid()} {time.time():.3f}")
    os.kill(os.getpid(), signal.SIGKILL)
