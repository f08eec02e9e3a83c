"""How long events are kept, and pruning the ones whose time is up.

Svix redelivers with the same svix-id for about 28 hours, and a person can resend or recover days
later; an id pruned too soon would let such a redelivery run again. Hence a floor of two days, and
by default only finished events are pruned: failed ones wait until someone has looked at them.
"""

import logging
from datetime import datetime, timedelta

from inbox import Inbox, Status, utcnow

log = logging.getLogger(__name__)

MINIMUM_DAYS = 2
DEFAULT_DAYS = 30
FINISHED = (Status.DONE, Status.IGNORED, Status.DUPLICATE)
FAILED = (Status.DEAD, Status.INVALID)


def prune(inbox: Inbox, older_than_days: int, include_failed: bool = False, now: datetime | None = None) -> int:
    """Delete finished (and, if asked, failed) events received more than `older_than_days` ago.

    Events still to be processed (received, processing, retrying) are never pruned.
    """
    if older_than_days < MINIMUM_DAYS:
        raise ValueError(f"events must be kept at least {MINIMUM_DAYS} days, so a Svix redelivery is still recognised")
    statuses = FINISHED + FAILED if include_failed else FINISHED
    before = (now or utcnow()) - timedelta(days=older_than_days)
    pruned = inbox.prune(before, statuses)
    if pruned:
        log.info("pruned %d event(s) received before %s", pruned, before.isoformat(timespec="seconds"))
    return pruned
