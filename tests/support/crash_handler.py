"""The crash suite's handler module (HANDLER_MODULES=support.crash_handler), run by `python main.py worker`.

Every call that finishes appends `<kind> <request_id> <message_id> <pid>` to CRASH_DIR/completions; a call
killed part-way appends nothing. For the optimizations the test chose (`<kind>-<request_id>` in CRASH_DIR
files), the first call SIGKILLs its own worker process:

- chosen-handler-mid: in the middle of the handler, before it finishes (nothing appended);
- chosen-handler-after: just after it finished (appended), before the event can be marked done, so the
  handler must run again: the at-least-once window the results folder's idempotence covers.

It runs after the built-in handlers (the console summary and the results folder), which are registered first.
"""

import os
import random
import time

from handlers.registry import Event, Registry
from results import Result
from support.crash_common import (
    CHOSEN_HANDLER_AFTER,
    CHOSEN_HANDLER_MID,
    COMPLETIONS,
    append_line,
    chosen,
    first_time,
    kill_self,
)


def register(handlers: Registry) -> None:
    handlers.subscribe("*", handle)


def handle(event: Event, result: Result) -> None:
    key = f"{event.kind}-{event.request_id}"
    time.sleep(random.uniform(0, 0.02))  # some work, so the kill lands part-way through it
    if key in chosen(CHOSEN_HANDLER_MID) and first_time(f"handler-{key}"):
        kill_self("handler-mid", f"{key}:{event.message_id}")
    append_line(COMPLETIONS, f"{event.kind} {event.request_id} {event.message_id} {os.getpid()}")
    if key in chosen(CHOSEN_HANDLER_AFTER) and first_time(f"handler-{key}"):
        kill_self("handler-after", f"{key}:{event.message_id}")
