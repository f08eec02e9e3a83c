"""The default of every setting, and the limits and timings several modules share, each with its unit and
the reason for its value. A constant that belongs to one mechanism lives beside it instead (for
example group_commit.MAX_BATCH, lifecycle.WAKE_SECONDS, checks.CLOCK_FAIL_SECONDS)."""

from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent

# Where the embedded databases live unless DATABASE_URL / QUEUE_URL say otherwise (git-ignored).
INSTANCE_DIR = PROJECT_DIR / "instance"
DATABASE_URL = f"sqlite:///{INSTANCE_DIR / 'inbox.db'}"
QUEUE_URL = f"sqlite:///{INSTANCE_DIR / 'queue.db'}"

OPTIPICK_API_URL = "https://optipick.api.optioryx.com"
HOST = "127.0.0.1"
PORT = 5000
LOG_LEVEL = "INFO"

# Bytes. Svix never sends a payload above 1 MiB; the margin leaves room for nothing else to be cut off.
MAX_BODY_BYTES = 1024 * 1024 + 64 * 1024

# Processing attempts per event before it is marked dead: the first try plus one per RETRY_DELAYS entry.
MAX_ATTEMPTS = 8
# Seconds to wait after the n-th failed attempt (the last value repeats). About 21 hours in all,
# comparable to the 28 hours Svix itself keeps retrying.
RETRY_DELAYS = (10, 60, 5 * 60, 30 * 60, 2 * 3600, 6 * 3600, 12 * 3600)
# Attempts for a result the API does not have (404/422): it may not be readable yet, but it will not
# appear after a day either, so give up after a few minutes instead of the whole retry budget.
NOT_FOUND_MAX_ATTEMPTS = 4
# Attempts for a 200 whose body cannot be read as JSON (not JSON, NaN or Infinity, nested too deep):
# asking again gets the same bytes, so the second attempt is only for an answer mangled on the way.
UNREADABLE_MAX_ATTEMPTS = 2

# Worker threads of the Huey consumer. Each spends most of its time waiting on the API.
WORKER_THREADS = 4

# Seconds a worker owns an event it has claimed. Longer than the worst fetch (two API calls of
# API_DEADLINE_SECONDS each when the kind has to be detected), and renewed before the handlers run.
# A worker that dies leaves its event to the reconciler once the lease has run out.
LEASE_SECONDS = 60

# Seconds a stopping worker waits for its running tasks before it gives them back (SIGINT/SIGTERM).
# Process managers must allow a little more before they kill (systemd TimeoutStopSec, Docker's
# stop grace period).
SHUTDOWN_GRACE_SECONDS = 30

# Seconds (connect, read) for every OptiPick API call; every outbound call has a timeout. Each bounds one
# wait for the network, not the call: an answer that trickles in a byte at a time never trips them.
API_TIMEOUT = (5.0, 15.0)
# Seconds one OptiPick API call may take in all, from connecting to the answer's last byte: the two
# timeouts' sum, so a call that uses each in full still ends in time, and two calls (detecting the
# kind) stay well inside LEASE_SECONDS.
API_DEADLINE_SECONDS = 20.0
# Bytes of one API answer read at most (MAX_RESULT_BYTES). A route result takes about 300 bytes a pick,
# so this holds a wave of some 100,000 picks; a larger answer is refused before it is all in memory,
# where its parsed document would take several times its size, in every worker thread at once.
MAX_RESULT_BYTES = 32 * 1024 * 1024

# Seconds an event may wait in `received` before the reconciler enqueues it again: long enough
# that a task that is merely queued is not doubled, short enough that a lost one is found soon.
RECONCILE_AFTER_SECONDS = 30
# Events re-enqueued per reconciler run, so a large backlog cannot flood the queue in one go.
RECONCILE_BATCH = 500

# Milliseconds SQLite waits for a lock held by another process before it gives up (the workers'
# bookkeeping, the commands; a delivery waits no longer than its acknowledgement deadline allows).
SQLITE_BUSY_TIMEOUT_MS = 5000

# Seconds within which every POST /webhook is answered (ACK_DEADLINE_SECONDS): 2xx after its commit, or
# 503 when the inbox cannot commit in time. Svix counts an answer later than 15 s as a failure and
# retries; 10 leaves room for the network and a proxy. The service's limit is ACK_DEADLINE_LIMIT.
ACK_DEADLINE_SECONDS = 10
ACK_DEADLINE_LIMIT = 14
# Seconds the request path's enqueue waits for the queue (a locked queue.db, a Redis or PostgreSQL
# queue that does not answer), once for its turn among the request threads and once for the queue
# itself. A task not enqueued costs nothing: the reconciler enqueues the event.
ENQUEUE_TIMEOUT_SECONDS = 0.2
# Seconds of the acknowledgement deadline kept for what follows the commit: the enqueue (twice
# ENQUEUE_TIMEOUT_SECONDS at most) and the answer. The commit gets the rest.
ANSWER_RESERVE_SECONDS = 2 * ENQUEUE_TIMEOUT_SECONDS + 0.1
# Seconds GET /healthz waits for the inbox when it tries it (a load balancer's check times out soon).
HEALTH_CHECK_SECONDS = 1.0
# Seconds a 503 asks the sender to wait (Svix retries on its own schedule either way).
RETRY_AFTER_ON_503 = 10

# Days an event is kept at least before pruning (PRUNE_AFTER_DAYS, `prune --older-than`): Svix
# redelivers a message for about 28 hours, and a redelivery of a pruned id would be processed again.
PRUNE_MINIMUM_DAYS = 2
# Days `prune` keeps events when not told otherwise.
PRUNE_DEFAULT_DAYS = 30
# Days an age may reach back at most (`prune --older-than`, PRUNE_AFTER_DAYS, `recover --since 30d`):
# about a hundred years, older than any event; a larger number is a slip, and would overflow the clock.
MAX_AGE_DAYS = 36_500
