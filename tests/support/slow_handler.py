"""A handler module for the shutdown tests (HANDLER_MODULES=support.slow_handler): every call first appends
`started <message_id>` to the file named by STARTED_FILE, then sleeps SLOW_SECONDS, then appends
`<kind> <request_id> <message_id>` to COUNT_FILE (as counting_handler does). A run cut off by a stop or
a kill leaves its `started` line and no COUNT_FILE line, so a test can tell finished calls from
interrupted ones across processes."""

import os
import time

from handlers.registry import Event, Registry
from results import Result
from support.counting_handler import count


def register(handlers: Registry) -> None:
    handlers.subscribe("*", slow)


def slow(event: Event, result: Result) -> None:
    _append(os.environ["STARTED_FILE"], f"started {event.message_id}\n")
    time.sleep(float(os.environ["SLOW_SECONDS"]))
    count(event, result)


def _append(path: str, line: str) -> None:
    # One write() with O_APPEND, as counting_handler does.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
