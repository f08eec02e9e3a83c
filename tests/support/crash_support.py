"""The crash suite's harness: the receiver as real processes (gunicorn with the test-only crash_app, and
`python main.py worker` processes with the crash_handler module), a plan of signed deliveries, senders that
retry like Svix, a chaos thread that SIGKILLs processes from the outside, a supervisor that restarts them,
the wait for every acknowledged delivery to reach a final status, and the figures of a run.

Every process is started in its own session (process group), so a kill or the clean-up reaches the whole
group (gunicorn's master and its workers), and (on Linux) dies with the test process should that be killed
outright before its clean-up runs (die_with_parent in support/processes.py). Every wait is bounded.
Loopback only.
"""

import json
import os
import random
import signal
import subprocess
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from sqlalchemy import func, select

import defaults
from inbox import FINAL_STATUSES, Inbox, Status, events, history
from optipick_standin import StandInApi
from signatures import new_secret, signed_headers
from support.crash_common import (
    CHOSEN_HANDLER_AFTER,
    CHOSEN_HANDLER_MID,
    CHOSEN_WEB,
    COMPLETIONS,
    KILLS,
    MARKERS,
    write_chosen,
)
from support.processes import Process, healthy, process_env, wait_until

WEB_WORKERS = 2
WORKERS = 2
WORKER_THREADS = 4
LEASE_SECONDS = 2
SHUTDOWN_GRACE_SECONDS = 1
SENDER_THREADS = 8
SENDER_DEADLINE_SECONDS = 90  # how long one copy keeps retrying a dropped or refused delivery, as Svix would
CHAOS_INTERVAL = (0.5, 1.0)  # seconds between two outside kills during the send phase
RESTART_DELAY = (0.3, 2.5)  # seconds before a dead worker is started again
NUDGE_AFTER_SECONDS = 1.5  # due work left this long without being picked up: restart a worker to reconcile now
NUDGE_EVERY_SECONDS = 3.0
# The share of genuine messages whose first storing POST kills its web process before it answers, and of
# optimizations whose first handler call kills its worker mid-way, or just after the handler finished.
WEB_KILL_SHARE = HANDLER_MID_SHARE = HANDLER_AFTER_SHARE = 0.04
DELIVERY_STYLES = ("path-kind", "payload-type", "path-warehouse", "detect")
EXAMPLE_USER = "673f0a1b2c3d4e5f6a7b8c9d"
WORKER_WARM_UP_SECONDS = 3.0  # a nudge restarts only a worker up this long (past its start-up)


# The plan ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    """One Svix message: a svix-id and its body, delivered one or more times."""

    msg_id: str
    kind: str
    request_id: str
    path: str
    body: str
    forged: bool = False


@dataclass(frozen=True)
class Job:
    """Sending `copies` copies of a message at the same moment from as many threads (one copy: a plain send)."""

    message: Message
    copies: int = 1


@dataclass
class Plan:
    messages: list[Message]
    jobs: list[Job]
    optimizations: list[tuple[str, str]]  # (kind, request_id) of the genuine messages
    forged_optimizations: list[tuple[str, str]]  # request ids that only forged messages name
    # The chosen kill points: svix-ids, and <kind>-<request_id> of optimizations (see crash_common).
    web_kills: list[str] = field(default_factory=list)
    handler_mid_kills: list[str] = field(default_factory=list)
    handler_after_kills: list[str] = field(default_factory=list)

    def write_choices(self, directory: Path) -> None:
        write_chosen(directory, CHOSEN_WEB, self.web_kills)
        write_chosen(directory, CHOSEN_HANDLER_MID, self.handler_mid_kills)
        write_chosen(directory, CHOSEN_HANDLER_AFTER, self.handler_after_kills)

    @property
    def genuine(self) -> list[Message]:
        return [m for m in self.messages if not m.forged]

    @property
    def forged(self) -> list[Message]:
        return [m for m in self.messages if m.forged]

    @property
    def deliveries(self) -> int:
        return sum(job.copies for job in self.jobs)


def new_request_id(rng: random.Random) -> str:
    return f"{rng.getrandbits(96):024x}"


def new_message_id(rng: random.Random) -> str:
    return f"msg_{rng.getrandbits(128):032x}"


def genuine_message(rng: random.Random, kind: str, request_id: str) -> Message:
    style = rng.choice(DELIVERY_STYLES)
    payload: dict[str, Any] = {"request_id": request_id}
    if style == "path-kind":
        path = f"/webhook/{kind}"
    elif style == "payload-type":
        path, payload["type"] = "/webhook", f"{kind}.optimized"
    elif style == "path-warehouse":
        path = f"/webhook/{kind}.optimized.Example.{EXAMPLE_USER}"
    else:  # no type anywhere: the worker asks the API which kind the id is
        path = "/webhook"
    return Message(new_message_id(rng), kind, request_id, path, json.dumps(payload))


def build_plan(rng: random.Random, deliveries: int, api: StandInApi) -> Plan:
    """About `deliveries` POSTs: a distinct request id per optimization, its message sent once (60 %), twice
    (25 %) or three times (15 %), the copies of half of those concurrently and the others at random later
    moments; a second message (another svix-id) for 12 % of the optimizations; and a few forgeries signed with
    another secret, half under a fresh svix-id and half under a genuine message's svix-id with another body.
    Every request id, the forged ones too, is served by the stand-in API, so a leak would show in the results.
    And the kill points: 4 % of the genuine messages (the web process dies between storing and answering),
    4 % of the optimizations (the worker dies mid-handler) and 4 % more (it dies just after the handler)."""
    forged_count = max(4, deliveries // 25)
    budget = deliveries - forged_count
    messages: list[Message] = []
    jobs: list[Job] = []
    optimizations: list[tuple[str, str]] = []

    def add(message: Message) -> None:
        nonlocal budget
        copies = min(budget, 1 if (draw := rng.random()) < 0.6 else 2 if draw < 0.85 else 3)
        budget -= copies
        messages.append(message)
        if copies > 1 and rng.random() < 0.5:
            jobs.append(Job(message, copies))
        else:
            jobs.extend(Job(message) for _ in range(copies))

    while budget > 0:
        kind = rng.choice(("route", "cluster"))
        request_id = new_request_id(rng)
        api.add_result(kind, request_id)
        optimizations.append((kind, request_id))
        add(genuine_message(rng, kind, request_id))
        if budget > 0 and rng.random() < 0.12:
            add(genuine_message(rng, kind, request_id))

    forged_optimizations = []
    genuine = list(messages)
    for number in range(forged_count):
        kind = rng.choice(("route", "cluster"))
        request_id = new_request_id(rng)
        api.add_result(kind, request_id)
        forged_optimizations.append((kind, request_id))
        model = genuine_message(rng, kind, request_id)
        msg_id = rng.choice(genuine).msg_id if number % 2 else model.msg_id
        forged = Message(msg_id, kind, request_id, model.path, model.body, forged=True)
        messages.append(forged)
        jobs.append(Job(forged))
    rng.shuffle(jobs)
    plan = Plan(messages, jobs, optimizations, forged_optimizations)
    plan.web_kills = rng.sample([m.msg_id for m in genuine], max(2, round(WEB_KILL_SHARE * len(genuine))))
    keys = [f"{kind}-{request_id}" for kind, request_id in optimizations]
    mid, after = max(2, round(HANDLER_MID_SHARE * len(keys))), max(2, round(HANDLER_AFTER_SHARE * len(keys)))
    chosen = rng.sample(keys, mid + after)
    plan.handler_mid_kills, plan.handler_after_kills = chosen[:mid], chosen[mid:]
    return plan


# Sending -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """One POST: its HTTP status (None when the connection failed) and the answer's `status` field."""

    code: int | None
    status: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.code is not None and 200 <= self.code < 300


class Sender:
    """Sends the plan as Svix would: each copy re-signed at every try with the current time, retried after a
    dropped connection, a refused connection or a 5xx with a short backoff (Svix's is minutes; the test has
    seconds), until it gets a non-5xx answer or SENDER_DEADLINE_SECONDS pass."""

    BACKOFF = (0.2, 0.4, 0.8, 1.2, 1.6, 2.0)

    def __init__(self, base_url: str, secret: str, stop: threading.Event) -> None:
        self.base_url = base_url
        self.secret = secret
        self.forger_secret = new_secret()
        self.stop = stop
        self.deadline = float("inf")  # set by run(): nothing is sent after it
        self.lock = threading.Lock()
        self.chains: dict[str, list[list[Answer]]] = defaultdict(list)  # msg_id -> one chain of tries per copy
        self.forged_chains: dict[str, list[list[Answer]]] = defaultdict(list)

    def send_copy(self, message: Message) -> list[Answer]:
        chain: list[Answer] = []
        deadline = min(time.monotonic() + SENDER_DEADLINE_SECONDS, self.deadline)
        for attempt in range(10_000):
            headers = signed_headers(
                self.forger_secret if message.forged else self.secret, message.body, message.msg_id
            )
            try:
                response = requests.post(
                    self.base_url + message.path, data=message.body, headers=headers, timeout=(3, 15)
                )
            except requests.RequestException as exc:
                chain.append(Answer(None, error=type(exc).__name__))
            else:
                try:
                    status = response.json().get("status")
                except (ValueError, AttributeError):
                    status = None
                chain.append(Answer(response.status_code, status))
                if response.status_code < 500:
                    break
            if time.monotonic() > deadline or self.stop.is_set():
                break
            time.sleep(self.BACKOFF[min(attempt, len(self.BACKOFF) - 1)])
        with self.lock:
            (self.forged_chains if message.forged else self.chains)[message.msg_id].append(chain)
        return chain

    def run_job(self, job: Job) -> None:
        if job.copies == 1:
            self.send_copy(job.message)
            return
        barrier = threading.Barrier(job.copies)

        def copy() -> None:
            barrier.wait(timeout=10)
            self.send_copy(job.message)

        threads = [threading.Thread(target=copy, daemon=True) for _ in range(job.copies)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=SENDER_DEADLINE_SECONDS + 30)

    def run(self, jobs: list[Job], seconds: float) -> None:
        """Send every job from SENDER_THREADS threads, job i not before i * seconds / len(jobs) after the start,
        so the sending lasts about `seconds` (longer when outages hold the senders back, but never more than
        SENDER_DEADLINE_SECONDS longer: what is not sent by then is never acknowledged, and the test says so)."""
        started = time.monotonic()
        self.deadline = started + seconds + SENDER_DEADLINE_SECONDS
        step = seconds / max(len(jobs), 1)
        queue = list(enumerate(jobs))
        queue.reverse()
        queue_lock = threading.Lock()

        def work() -> None:
            while not self.stop.is_set() and time.monotonic() < self.deadline:
                with queue_lock:
                    if not queue:
                        return
                    number, job = queue.pop()
                self.stop.wait(max(0.0, started + number * step - time.monotonic()))
                self.run_job(job)

        with ThreadPoolExecutor(SENDER_THREADS, thread_name_prefix="sender") as pool:
            futures = [pool.submit(work) for _ in range(SENDER_THREADS)]
            try:
                for future in futures:
                    future.result()
            except BaseException:  # a failure or the test's timeout: let the other senders give up at once
                self.stop.set()
                raise


# Processes -----------------------------------------------------------------------------------------


class Proc(Process):
    """A receiver process of the crash suite, in a session of its own (a kill reaches gunicorn's workers too),
    and killed by the kernel should the test process die first (die_with_parent): nothing outlives a test run
    that is itself killed outright (a CI timeout) before its clean-up can run."""

    def __init__(self, name: str, args: list[str], env: Mapping[str, str], log_path: Path) -> None:
        super().__init__(args, env, log_path, name=name, new_session=True, die_with_parent=True)

    def kill_group(self) -> None:
        """SIGKILL the process and everything in its session (gunicorn's workers)."""
        with suppress(subprocess.TimeoutExpired):
            self.kill()

    def stopped_cleanly(self) -> bool:
        """Whether the process ended as a SIGINT should end it: exit code 0; or, interrupted while still
        starting up (before it installs its signal handlers, so before it could claim anything), by the
        KeyboardInterrupt: killed by SIGINT, or exit code 1 after click's "Aborted!"."""
        code = self.popen.returncode
        return code in (0, -signal.SIGINT) or (code == 1 and self.log().rstrip().endswith("Aborted!"))

    def stop_gracefully(self, timeout: float) -> int | None:
        """SIGINT, then wait; SIGKILL the group when it is still there after `timeout` seconds."""
        if self.running():
            self.signal(signal.SIGINT)
            try:
                return self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        self.kill_group()
        return self.popen.returncode


def child_pids(pid: int) -> list[int]:
    """Live children of `pid` (gunicorn's workers), from /proc."""
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            children.append(int(entry))
    return children


@dataclass(frozen=True)
class Kill:
    at: float  # time.time(), to compare with the processes' log lines
    kind: str  # outside-worker, outside-web-worker, outside-web-master (the test's), or a self-inflicted kind
    pids: tuple[int, ...]


@dataclass
class Slot:
    number: int
    proc: Proc
    restart_at: float | None = None


class Cluster:
    """gunicorn (crash_app, WEB_WORKERS workers) plus WORKERS `python main.py worker` processes, kept running:
    a dead worker is started again after RESTART_DELAY, a dead gunicorn master at once."""

    def __init__(self, env: Mapping[str, str], port: int, log_dir: Path, crash_dir: Path, seed: int) -> None:
        self.env = dict(env)
        self.port = port
        self.log_dir = log_dir
        self.crash_dir = crash_dir
        self.rng = random.Random(f"{seed}:cluster")
        self.lock = threading.RLock()
        self.procs: list[Proc] = []
        self.outside_kills: list[Kill] = []
        self.restarts: Counter[str] = Counter()
        self.unexpected: list[str] = []
        self.worker_deaths: list[int] = []
        self.web: Proc | None = None
        self.slots: list[Slot] = []
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._supervisor: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _start(self, name: str, args: list[str]) -> Proc:
        proc = Proc(name, args, self.env, self.log_dir / f"{len(self.procs) + 1:03d}-{name}.log")
        self.procs.append(proc)
        return proc

    def _start_web(self) -> Proc:
        args = ["-m", "gunicorn", "--bind", f"127.0.0.1:{self.port}", "--workers", str(WEB_WORKERS)]
        args += ["--graceful-timeout", "1", "--timeout", "30", "support.crash_app:create_app()"]
        return self._start("web", args)

    def _start_worker(self, number: int) -> Proc:
        return self._start(f"worker{number}", ["main.py", "worker"])

    def start(self) -> None:
        self.web = self._start_web()
        self.slots = [Slot(n, self._start_worker(n)) for n in range(WORKERS)]
        wait_until(self._healthy, f"{self.base_url}/healthz to answer 200", timeout=60, watch=None)
        self._supervisor = threading.Thread(target=self._supervise, name="supervisor", daemon=True)
        self._supervisor.start()

    def _healthy(self) -> bool:
        return healthy(self.base_url)

    # Kills and restarts -----------------------------------------------------------------------------

    def self_kills(self) -> list[tuple[str, str, int]]:
        """The kills the receiver's processes inflicted on themselves: (kind, key, pid)."""
        try:
            lines = (self.crash_dir / KILLS).read_text().splitlines()
        except FileNotFoundError:
            return []
        return [(kind, key, int(pid)) for kind, key, pid, _at in (line.split() for line in lines)]

    def killed_pids(self) -> set[int]:
        pids = {pid for kill in self.outside_kills for pid in kill.pids}
        return pids | {pid for _kind, _key, pid in self.self_kills()}

    def _supervise(self) -> None:
        # This thread starts processes, so it lives until close(): the kernel kills a process when the thread
        # that started it ends (die_with_parent).
        while not self._stop.wait(0.1):
            if self._paused.is_set():
                continue
            with self.lock:
                now = time.monotonic()
                if self.web is not None and not self.web.running():
                    self._note_death(self.web, "web")
                    self.web.kill_group()  # its orphaned workers too, so the port is free again
                    self.web = self._start_web()
                    self.restarts["web"] += 1
                for slot in self.slots:
                    if slot.proc.running():
                        continue
                    if slot.restart_at is None:
                        self._note_death(slot.proc, "worker")
                        self.worker_deaths.append(slot.proc.pid)
                        slot.restart_at = now + self.rng.uniform(*RESTART_DELAY)
                    elif now >= slot.restart_at:
                        slot.proc = self._start_worker(slot.number)
                        slot.restart_at = None
                        self.restarts["worker"] += 1

    def _note_death(self, proc: Proc, role: str) -> None:
        if proc.pid not in self.killed_pids():
            self.unexpected.append(f"{proc} exited by itself (code {proc.popen.returncode}):\n{proc.log()[-3000:]}")

    def kill_at_random(self) -> None:
        """SIGKILL a random worker, gunicorn worker or the gunicorn master (and with it its workers)."""
        with self.lock:
            target = self.rng.choices(("worker", "web-worker", "web-master"), weights=(65, 30, 5))[0]
            if target == "worker":
                alive = [slot.proc for slot in self.slots if slot.proc.running()]
                if alive:
                    victim = self.rng.choice(alive)
                    self.outside_kills.append(Kill(time.time(), "outside-worker", (victim.pid,)))
                    os.kill(victim.pid, signal.SIGKILL)
            elif self.web is not None and self.web.running():
                web_workers = child_pids(self.web.pid)
                if target == "web-worker" and web_workers:
                    victim_pid = self.rng.choice(web_workers)
                    self.outside_kills.append(Kill(time.time(), "outside-web-worker", (victim_pid,)))
                    os.kill(victim_pid, signal.SIGKILL)
                elif target == "web-master":
                    pids = (self.web.pid, *web_workers)
                    self.outside_kills.append(Kill(time.time(), "outside-web-master", pids))
                    os.killpg(self.web.pid, signal.SIGKILL)

    def chaos(self, stop: threading.Event) -> None:
        while not stop.wait(self.rng.uniform(*CHAOS_INTERVAL)):
            self.kill_at_random()

    def nudge(self) -> bool:
        """Restart one running worker gracefully, so its start-up reconciler pass enqueues what is due now."""
        with self.lock:
            running = [s for s in self.slots if s.proc.running() and s.proc.age() > WORKER_WARM_UP_SECONDS]
            if not running:
                return False
            slot = self.rng.choice(running)
            self._stop_gracefully(slot.proc)
            slot.proc = self._start_worker(slot.number)
            self.restarts["nudge"] += 1
            return True

    # Stopping ---------------------------------------------------------------------------------------

    def _stop_gracefully(self, proc: Proc) -> None:
        """SIGINT a worker and record it as unexpected unless it stopped cleanly. A worker whose own
        chosen handler kill fired while it finished its running tasks is SIGKILLed by the test, not by
        the service, and is not held against the stop."""
        proc.stop_gracefully(timeout=SHUTDOWN_GRACE_SECONDS + 15)
        if proc.stopped_cleanly():
            return
        if proc.popen.returncode == -signal.SIGKILL and proc.pid in {pid for *_, pid in self.self_kills()}:
            return
        self.unexpected.append(f"{proc} did not stop cleanly on SIGINT:\n{proc.log()[-3000:]}")

    def stop_workers(self) -> None:
        """Stop every worker gracefully (so no zombie handler runs on after the final count)."""
        with self.lock:
            self._paused.set()
        for slot in self.slots:
            if not slot.proc.running():  # killed, and not started again yet
                continue
            self._stop_gracefully(slot.proc)

    def close(self) -> None:
        """Kill every process ever started, whatever state the test is in."""
        with self.lock:
            self._paused.set()
        for proc in self.procs:
            proc.kill_group()
        self._stop.set()
        if self._supervisor is not None:
            self._supervisor.join(timeout=10)

    def logs(self) -> dict[int, str]:
        return {proc.pid: proc.log() for proc in self.procs}


# Waiting for the final state -------------------------------------------------------------------------


@dataclass
class Row:
    msg_id: str
    status: Status
    kind: str | None
    request_id: str | None
    attempts: int
    body: bytes
    lease_until: datetime | None
    next_attempt_at: datetime | None


def read_rows(inbox: Inbox) -> list[Row]:
    """Every inbox row, read without changing anything (Inbox.due would move next_attempt_at)."""
    query = select(
        events.c.msg_id,
        events.c.status,
        events.c.kind,
        events.c.request_id,
        events.c.attempts,
        events.c.body,
        events.c.lease_until,
        events.c.next_attempt_at,
    ).order_by(events.c.id)
    with inbox.engine.connect() as conn:
        return [
            Row(r.msg_id, Status(r.status), r.kind, r.request_id, r.attempts, r.body, r.lease_until, r.next_attempt_at)
            for r in conn.execute(query)
        ]


def is_due(row: Row, now: datetime) -> bool:
    """Whether the reconciler would enqueue the row now (the conditions of Inbox.due)."""
    if row.status in (Status.RECEIVED, Status.RETRYING):
        return row.next_attempt_at is not None and row.next_attempt_at <= now
    return row.status is Status.PROCESSING and row.lease_until is not None and row.lease_until < now


def history_actions(inbox: Inbox) -> Counter[str]:
    with inbox.engine.connect() as conn:
        return Counter(conn.scalars(select(history.c.action)))


def first_claim_delays(inbox: Inbox) -> list[float]:
    """Seconds from each event's arrival to its first claim by a worker."""
    query = (
        select(events.c.received_at, func.min(history.c.at))
        .join(history, (history.c.event_id == events.c.id) & (history.c.action == "claimed"))
        .group_by(events.c.id, events.c.received_at)
    )
    with inbox.engine.connect() as conn:
        return [(claimed.replace(tzinfo=UTC) - received).total_seconds() for received, claimed in conn.execute(query)]


@dataclass
class Convergence:
    converged: bool
    seconds: float
    pending: list[Row] = field(default_factory=list)


def converge(cluster: Cluster, inbox: Inbox, msg_ids: set[str], bound: float) -> Convergence:
    """Wait (at most `bound` seconds) for every row of `msg_ids` to be final. When due work is left waiting
    (a lost task, an expired lease), restart a worker gracefully: its start-up reconciler pass enqueues it."""
    started = time.monotonic()
    due_since: float | None = None
    last_nudge = 0.0
    while True:
        rows = [row for row in read_rows(inbox) if row.msg_id in msg_ids]
        pending = [row for row in rows if row.status not in FINAL_STATUSES]
        missing = msg_ids - {row.msg_id for row in rows}
        now = time.monotonic()
        if not pending and not missing:
            return Convergence(True, now - started)
        if now - started > bound:
            return Convergence(False, now - started, pending)
        if any(is_due(row, datetime.now(UTC)) for row in pending):
            due_since = due_since or now
            waited = now - due_since >= NUDGE_AFTER_SECONDS and now - last_nudge >= NUDGE_EVERY_SECONDS
            if waited and cluster.nudge():
                last_nudge = time.monotonic()
                due_since = None
        else:
            due_since = None
        time.sleep(0.25)


def convergence_bound(deliveries: int) -> float:
    """Lease + the wait before a `received` row counts as lost + one retry delay, plus slack for the nudges,
    the restarts and the work itself (which grows with the number of deliveries) on a loaded machine."""
    return (
        LEASE_SECONDS
        + defaults.RECONCILE_AFTER_SECONDS
        + defaults.RETRY_DELAYS[0]
        + NUDGE_EVERY_SECONDS
        + 20
        + deliveries * 0.05
    )


# Completions ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Completion:
    kind: str
    request_id: str
    msg_id: str
    pid: int


def read_completions(crash_dir: Path) -> list[Completion]:
    try:
        lines = (crash_dir / COMPLETIONS).read_text().splitlines()
    except FileNotFoundError:
        return []
    return [Completion(kind, rid, msg, int(pid)) for kind, rid, msg, pid in (line.split() for line in lines)]


def prepare_crash_dir(path: Path) -> Path:
    (path / MARKERS).mkdir(parents=True)
    return path


def receiver_env(environ: Mapping[str, str], crash_dir: Path, port: int, **overrides: str) -> dict[str, str]:
    return process_env(
        environ,
        PORT=str(port),
        HANDLER_MODULES="support.crash_handler",
        LEASE_SECONDS=str(LEASE_SECONDS),
        SHUTDOWN_GRACE_SECONDS=str(SHUTDOWN_GRACE_SECONDS),
        WORKER_THREADS=str(WORKER_THREADS),
        PRUNE_AFTER_DAYS="",
        CRASH_DIR=str(crash_dir),
        **overrides,
    )
