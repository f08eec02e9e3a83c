"""The console handler: one log line per result, saying what the optimization achieved."""

import logging

from event_types import Event
from results import Result
from summaries import summary

log = logging.getLogger("summary")


def summarize(event: Event, result: Result) -> None:
    log.info("%s", summary(event, result))
