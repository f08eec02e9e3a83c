"""A handler module for the restart tests (HANDLER_MODULES=support.counting_handler): every call appends one
line `<kind> <request_id> <message_id>` to the file named by COUNT_FILE, so a test can count calls
across processes, including processes it killed."""

import os

from handlers.registry import Event, Registry
from results import Result


def register(handlers: Registry) -> None:
    handlers.subscribe("*", count)


def count(event: Event, result: Result) -> None:
    line = f"{event.kind} {event.request_id} {event.message_id}\n".encode()
    # One write() with O_APPEND: lines from several processes or threads never interleave.
    fd = os.open(os.environ["COUNT_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def read_counts(path: os.PathLike[str] | str) -> list[str]:
    """The lines written so far (none when the file does not exist yet)."""
    try:
        with open(path) as file:
            return file.read().splitlines()
    except FileNotFoundError:
        return []
