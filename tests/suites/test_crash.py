"""The crash suite: the receiver as real processes (gunicorn with two workers, two `python main.py worker`
processes) takes a few hundred signed deliveries (redelivered, concurrent, second messages, forgeries) while
processes are SIGKILLed at random and at chosen points, and restarted; then three invariants are checked on
the final state:

1. every acknowledged delivery reaches a final status, within lease + reconcile wait + a retry, plus slack;
2. each optimization's effect happens exactly once (one results file); its handler completes at least once,
   and every repeated completion is explained by a kill (or a lost lease) that landed after it;
3. no forged delivery creates a row or any effect.

It runs on every backend of conftest's `backend` fixture: SQLite files always; a PostgreSQL inbox with a
Redis queue, and PostgreSQL for both, when TEST_DATABASE_URL and TEST_REDIS_URL are set (skipped without
them, failed without them when CI=true). CRASH_DELIVERIES (default 200) sets the size; CRASH_SEED replays a
run's plan and its chosen kill points.
"""

import json
import logging
import os
import random
import statistics
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from support.crash_support import (
    SENDER_DEADLINE_SECONDS,
    WORKER_THREADS,
    Answer,
    Cluster,
    Completion,
    Convergence,
    Plan,
    Row,
    Sender,
    build_plan,
    converge,
    convergence_bound,
    first_claim_delays,
    history_actions,
    prepare_crash_dir,
    read_completions,
    read_rows,
    receiver_env,
)
from support.processes import free_port
from support.standin import API_KEY

import defaults
from inbox import Inbox, Status

DELIVERIES = int(os.environ.get("CRASH_DELIVERIES") or 200)
SEND_SECONDS = max(8.0, DELIVERIES / 13)

# A backstop only: start-up (60 s at most), sending, the convergence bound, stopping, with a minute to spare.
TIMEOUT = 60 + SEND_SECONDS + SENDER_DEADLINE_SECONDS + convergence_bound(DELIVERIES) + 60

pytestmark = [pytest.mark.crash, pytest.mark.slow, pytest.mark.timeout(int(TIMEOUT))]


@dataclass
class Repeats:
    repeated: int = 0  # completions beyond the first, per optimization
    cut_by_pid: Counter[int] = field(default_factory=Counter)  # killed pid -> its completions not marked done
    lost_claim: int = 0  # completions whose process lost its claim before it could mark the event done
    marked_done_twice: int = 0  # optimizations whose completions two processes marked done (never, if right)
    unexplained: list[Completion] = field(default_factory=list)  # neither done, killed nor lost: never, if right


@dataclass
class Run:
    """Everything a crash run leaves behind, read after every worker has stopped."""

    backend: str
    seed: int
    plan: Plan
    sender: Sender
    cluster: Cluster
    convergence: Convergence
    bound: float
    send_seconds: float
    rows: list[Row]
    completions: list[Completion]
    results: list[Path]
    stray_files: list[Path]
    fetches: Counter[tuple[str, str]]
    actions: Counter[str]
    claim_delays: list[float]
    logs: dict[int, str]

    def acknowledged(self) -> set[str]:
        return {m for m, chains in self.sender.chains.items() if any(a.ok for chain in chains for a in chain)}

    def acknowledged_optimizations(self) -> set[tuple[str, str]]:
        acked = self.acknowledged()
        return {(m.kind, m.request_id) for m in self.plan.genuine if m.msg_id in acked}

    def lost_then_answered(self) -> tuple[int, int]:
        """Copies whose connection failed before a later try was answered 2xx; of those, the ones answered
        "duplicate" (the lost answer's delivery had been committed)."""
        retried = duplicates = 0
        for chains in self.sender.chains.values():
            for chain in chains:
                ok = [i for i, answer in enumerate(chain) if answer.ok]
                if ok and any(answer.code is None for answer in chain[: ok[0]]):
                    retried += 1
                    duplicates += chain[ok[0]].status == "redelivered"
        return retried, duplicates

    def repeats(self) -> "Repeats":
        """Each handler completion explained by what its process did next: marked the event done, was killed
        first, or lost its claim first (its lease ran out and another worker took the event)."""
        killed = self.cluster.killed_pids()
        found = Repeats()
        per_optimization: dict[tuple[str, str], list[str]] = defaultdict(list)
        for c in self.completions:
            log = self.logs.get(c.pid, "")
            done_here = f"{c.msg_id}: done (" in log
            if c.pid in killed and not done_here:
                way = "killed"
                found.cut_by_pid[c.pid] += 1
            elif f"{c.msg_id}: lost its claim" in log:
                way = "lost claim"
            elif done_here:
                way = "done"
            else:
                way = "unexplained"
                found.unexplained.append(c)
            per_optimization[(c.kind, c.request_id)].append(way)
        for ways in per_optimization.values():
            found.repeated += len(ways) - 1
            found.lost_claim += ways.count("lost claim")
            found.marked_done_twice += ways.count("done") > 1
        return found

    def kills(self) -> Counter[str]:
        kinds = Counter(kill.kind for kill in self.cluster.outside_kills)
        kinds.update(kind for kind, _key, _pid in self.cluster.self_kills())
        return kinds

    def figures(self) -> str:
        genuine, forged = self.plan.genuine, self.plan.forged
        acked = self.acknowledged()
        tries = [a for chains in self.sender.chains.values() for chain in chains for a in chain]
        forged_answers = Counter(
            a.code for chains in self.sender.forged_chains.values() for chain in chains for a in chain
        )
        retried, duplicates = self.lost_then_answered()
        repeats = self.repeats()
        optimizations = self.acknowledged_optimizations()
        fetched = [sum(self.fetches[(kind, rid)] for kind in ("route", "cluster")) for _k, rid in optimizations]
        second_messages = len(genuine) - len(self.plan.optimizations)
        late = sum(delay >= defaults.RECONCILE_AFTER_SECONDS for delay in self.claim_delays)
        errors = sum(" ERROR " in line for log in self.logs.values() for line in log.splitlines())
        lines = [
            f"crash suite on {self.backend}: seed {self.seed} (CRASH_SEED={self.seed} replays it)",
            f"  deliveries sent: {self.plan.deliveries} planned POSTs, {len(tries)} tries with retries; "
            f"{len(genuine)} genuine messages for {len(self.plan.optimizations)} optimizations "
            f"({second_messages} second messages), {len(forged)} forged",
            f"  acknowledged: {len(acked)} of {len(genuine)} genuine messages; answers to genuine tries: "
            f"{dict(Counter(a.code if a.code is not None else a.error for a in tries))}",
            f"  redelivered after a lost response: {retried} copies answered 2xx on a retry after a dropped "
            f"connection, {duplicates} of them as duplicates (committed before the answer was lost)",
            f"  forged: {len(forged)} messages, answers {dict(forged_answers)}",
            f"  kills: {dict(self.kills())} (total {sum(self.kills().values())})",
            f"  restarts: {dict(self.cluster.restarts)}; worker deaths {len(self.cluster.worker_deaths)}",
            f"  final statuses: {dict(Counter(str(row.status) for row in self.rows))} ({len(self.rows)} rows; "
            f"attempts per event at most {max((row.attempts for row in self.rows), default=0)})",
            f"  history: {dict(self.actions)}",
            f"  first claim after arrival: median {statistics.median(self.claim_delays or [0]):.1f} s, max "
            f"{max(self.claim_delays, default=0):.1f} s; {late} first claimed {defaults.RECONCILE_AFTER_SECONDS} s or "
            "more after arrival (a task lost, re-enqueued by the reconciler; or a backlog)",
            f"  results files: {len(self.results)} for {len(optimizations)} acknowledged optimizations; "
            f"stray temporary files {len(self.stray_files)}",
            f"  handler completions: {len(self.completions)}, repeated {repeats.repeated}; completions cut off "
            f"before done by a kill: {sum(repeats.cut_by_pid.values())} (by {len(repeats.cut_by_pid)} kills, "
            f"at most {max(repeats.cut_by_pid.values(), default=0)} by one), by a lost claim: {repeats.lost_claim}",
            f"  API fetches: {sum(self.fetches.values())} for {len(optimizations)} optimizations "
            f"(max {max(fetched, default=0)} for one)",
            f"  ERROR lines in the processes' logs: {errors}",
            f"  time: send phase {self.send_seconds:.1f} s, converged "
            + (f"in {self.convergence.seconds:.1f} s" if self.convergence.converged else "NOT")
            + f" (bound {self.bound:.0f} s)",
        ]
        return "\n".join(lines)


def lost_then_duplicate(chain: list[Answer]) -> bool:
    """Whether a copy's connection was dropped and a later try of it was answered 2xx as a duplicate."""
    dropped = [i for i, answer in enumerate(chain) if answer.code is None]
    return bool(dropped) and any(a.ok and a.status == "redelivered" for a in chain[dropped[0] + 1 :])


def crash_run(backend_name: str, environ: dict[str, str], api, secret: str, tmp_path: Path) -> Run:
    seed = int(os.environ.get("CRASH_SEED") or random.randrange(2**32))
    plan = build_plan(random.Random(seed), DELIVERIES, api)
    crash_dir = prepare_crash_dir(tmp_path / "crash")
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    port = free_port()
    inbox = Inbox.open(environ["DATABASE_URL"])
    plan.write_choices(crash_dir)
    cluster = Cluster(receiver_env(environ, crash_dir, port), port, log_dir, crash_dir, seed)
    stop_sending, stop_chaos = threading.Event(), threading.Event()
    sender = Sender(cluster.base_url, secret, stop_sending)
    chaos = threading.Thread(target=cluster.chaos, args=(stop_chaos,), name="chaos", daemon=True)
    try:
        cluster.start()
        started = time.monotonic()
        chaos.start()
        try:
            sender.run(plan.jobs, SEND_SECONDS)
        finally:
            stop_chaos.set()
            chaos.join(timeout=10)
        send_seconds = time.monotonic() - started
        acked = {m for m, chains in sender.chains.items() if any(a.ok for chain in chains for a in chain)}
        bound = convergence_bound(DELIVERIES)
        convergence = converge(cluster, inbox, acked, bound)
        cluster.stop_workers()
        results_dir = Path(environ["RESULTS_DIR"])
        return Run(
            backend=backend_name,
            seed=seed,
            plan=plan,
            sender=sender,
            cluster=cluster,
            convergence=convergence,
            bound=bound,
            send_seconds=send_seconds,
            rows=read_rows(inbox),
            completions=read_completions(crash_dir),
            results=sorted(results_dir.rglob("*.json")),
            stray_files=sorted(p for p in results_dir.rglob("*") if p.is_file() and p.suffix != ".json"),
            fetches=Counter(api.fetches),
            actions=history_actions(inbox),
            claim_delays=first_claim_delays(inbox),
            logs=cluster.logs(),
        )
    finally:
        stop_sending.set()
        stop_chaos.set()
        cluster.close()
        inbox.engine.dispose()
        # For a post-mortem beside the processes' logs: the test's own kills (self-inflicted ones are in crash/).
        lines = [f"{k.kind} {','.join(map(str, k.pids))} {k.at:.3f}\n" for k in cluster.outside_kills]
        (tmp_path / "outside_kills").write_text("".join(lines))


def test_crashes_lose_nothing_and_apply_each_result_once(
    backend, environ, api, secret, tmp_path, capsys, caplog, record_property
):
    """Under SIGKILLs every acknowledged delivery ends final, each effect happens once, no forgery stores."""
    caplog.set_level(logging.WARNING, logger="werkzeug")  # not a line per stand-in API request in a failure report
    run = crash_run(backend.name, environ, api, secret, tmp_path)
    figures = run.figures()
    record_property("crash_figures", figures)
    with capsys.disabled():
        print("\n" + figures)
    context = f"\n{figures}"

    assert not run.cluster.unexpected, "\n".join(run.cluster.unexpected) + context
    genuine = {m.msg_id: m for m in run.plan.genuine}
    acked = run.acknowledged()
    # Svix keeps retrying for a day; the senders retried for SENDER_DEADLINE_SECONDS while every crashed process
    # was restarted, so every genuine message got its 2xx.
    assert acked == set(genuine), f"never acknowledged: {sorted(set(genuine) - acked)}{context}"

    # 1. Every acknowledged delivery reached a final status within the bound, and with this API (which never
    # fails) the final status is done, or duplicate for the second message of an optimization.
    assert run.convergence.converged, f"still not final: {run.convergence.pending[:10]}{context}"
    rows = {row.msg_id: row for row in run.rows}
    assert {row.status for row in run.rows} <= {Status.DONE, Status.DUPLICATE}, context
    statuses: dict[tuple[str, str], list[Status]] = defaultdict(list)
    done_by: dict[tuple[str, str], str] = {}
    for msg_id in acked:
        message, row = genuine[msg_id], rows[msg_id]
        assert row.request_id == message.request_id, context
        # (A duplicate whose kind the API was to tell never learns it: the worker stops at the reservation.)
        assert row.kind == message.kind or (row.kind is None and row.status is Status.DUPLICATE), context
        statuses[(message.kind, message.request_id)].append(row.status)
        if row.status is Status.DONE:
            done_by[(message.kind, message.request_id)] = msg_id
    for optimization, seen in statuses.items():
        assert sorted(seen) == sorted([Status.DONE] + [Status.DUPLICATE] * (len(seen) - 1)), (optimization, seen)

    # 2. Exactly one effect per acknowledged optimization: one results file, with its result.
    optimizations = run.acknowledged_optimizations()
    results_dir = Path(environ["RESULTS_DIR"])
    assert run.results == sorted(results_dir / kind / f"{rid}.json" for kind, rid in optimizations), context
    for path in run.results:
        assert json.loads(path.read_text())["request_id"] == path.stem
    # Every optimization's handler completed at least once, always for the message that holds it.
    completed = Counter((c.kind, c.request_id) for c in run.completions)
    assert set(completed) == optimizations, context
    assert all(done_by[(c.kind, c.request_id)] == c.msg_id for c in run.completions), context
    # A completion is repeated only when its process died (or lost its lease) after the handler finished and
    # before the event was marked done: every completion is explained so, one process at most marked each
    # optimization done, a kill cut off at most one completion per worker thread (those in flight), and
    # every kill chosen just after a handler forced that optimization's handler to complete again.
    repeats = run.repeats()
    assert not repeats.unexplained, f"{repeats.unexplained}{context}"
    assert not repeats.marked_done_twice, context
    assert repeats.repeated <= sum(repeats.cut_by_pid.values()) + repeats.lost_claim, context
    assert max(repeats.cut_by_pid.values(), default=0) <= WORKER_THREADS, context
    for kind, key, _pid in run.cluster.self_kills():
        if kind == "handler-after":
            optimization_kind, request_id = key.partition(":")[0].split("-", 1)
            assert completed[(optimization_kind, request_id)] >= 2, (key, context)
    # Every acknowledged optimization was fetched from the API at least once.
    assert all(run.fetches[optimization] >= 1 for optimization in optimizations), context

    # The chosen kill points were reached: the handler kills (each fires once, unless an outside kill lands
    # between its "first time" marker and the kill itself) and the web kills between storing and answering
    # (each chosen message's first storing POST, unless an outside kill already cut that answer off). The
    # sender saw each of those answers dropped, and its retry of the same svix-id was answered 2xx as a
    # duplicate: stored before the answer.
    kills = run.kills()
    assert 1 <= kills["handler-mid"] <= len(run.plan.handler_mid_kills), context
    assert 1 <= kills["handler-after"] <= len(run.plan.handler_after_kills), context
    assert 1 <= kills["web-after-commit"] <= len(run.plan.web_kills), context
    for kind, msg_id, _pid in run.cluster.self_kills():
        if kind == "web-after-commit":
            chains = run.sender.chains[msg_id]
            assert any(lost_then_duplicate(chain) for chain in chains), (msg_id, chains)

    # 3. No forged delivery stored anything or had any effect.
    assert set(rows) <= set(genuine), f"rows for unknown ids: {sorted(set(rows) - set(genuine))}{context}"
    for message in run.plan.forged:
        answers = [a for chain in run.sender.forged_chains[message.msg_id] for a in chain]
        assert not any(a.ok for a in answers), (message, answers)
        assert answers[-1].code == 401, (message, answers)
        stored = rows.get(message.msg_id)
        assert stored is None or stored.body == genuine[message.msg_id].body.encode(), message
    for kind, rid in run.plan.forged_optimizations:
        assert run.fetches[(kind, rid)] == 0
        assert (kind, rid) not in completed
        assert not (results_dir / kind / f"{rid}.json").exists()

    # Neither the signing secret nor the API key ever reached a log.
    for pid, log in run.logs.items():
        assert secret.removeprefix("whsec_") not in log, pid
        assert API_KEY not in log, pid
