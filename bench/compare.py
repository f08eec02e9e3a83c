"""Before and after: the service's acknowledgement at another commit and in this tree, side by side.

    .venv/bin/python -m bench.compare REV [--rounds 3] [--seconds 12]

Anything new on the request path is measured this way, in one run: the other commit is checked out
into a temporary git worktree, and the two are served in turn (REV, this tree, REV, …) under the
bench's gunicorn layout, each with a `python main.py worker` beside it and the stand-in API answering
at once, each driven by the same closed-loop generator for the same time. It prints one line per
round and the ratio of the pooled rates, and writes nothing into the tree. Both sides run with this
tree's venv, so REV must run on today's requirements.
"""

import argparse
import logging
import statistics
import subprocess
import tempfile
from pathlib import Path

from bench import loadgen
from bench.common import Server, request_ids
from bench.procs import PROJECT_DIR, free_port, wait_healthy
from optipick_standin import StandInApi
from signatures import new_secret
from tests.support.processes import Process, process_env
from tests.support.standin import API_KEY

# Deliveries signed per second of a phase, before it starts: more than the service answers here, so
# the phase ends by its time, not by running out.
PHASE_RATE_CEILING = 2000


def measure(tree: Path, data: Path, secret: str, seconds: float, tag: int) -> loadgen.LoadResult:
    """One phase of signed deliveries against the service of `tree`, booted afresh on its own files."""
    ids = request_ids(tag, 200)
    api = StandInApi(API_KEY)
    for request_id in ids:
        api.add_result("route", request_id)
    data.mkdir(parents=True)
    with api.serve():
        settings = {
            "WEBHOOK_SECRET": secret,
            "OPTIPICK_API_KEY": API_KEY,
            "OPTIPICK_API_URL": api.url,
            "DATABASE_URL": f"sqlite:///{data / 'inbox.db'}",
            "QUEUE_URL": f"sqlite:///{data / 'queue.db'}",
        }
        env = process_env(settings, pythonpath=(tree,))
        port = free_port()
        started = [
            Process(Server().args(port, "webapp:create_app()"), env, data / "web.log", new_session=True, cwd=tree),
            Process(["main.py", "worker"], env, data / "worker.log", new_session=True, cwd=tree),
        ]
        try:
            wait_healthy(started[0], port)
            spec = loadgen.LoadSpec(port, secret, ids, int(seconds * PHASE_RATE_CEILING), seconds, f"msg_cmp{tag}_")
            with loadgen.Load(spec) as load:
                return load.run()
        finally:
            for process in reversed(started):
                process.stop(timeout=5)


def git(*args: str) -> None:
    subprocess.run(["git", *args], cwd=PROJECT_DIR, check=True)  # noqa: S603, S607 -- git on this repository


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("rev", help="the commit to compare this tree with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=12.0)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per stand-in API request
    secret = new_secret()
    with tempfile.TemporaryDirectory(prefix="bench-compare-") as tmp:
        before = Path(tmp) / "before"
        git("worktree", "add", "--detach", str(before), args.rev)
        try:
            results: dict[str, list[loadgen.LoadResult]] = {args.rev: [], "this tree": []}
            for round_no in range(1, args.rounds + 1):
                for name, tree in ((args.rev, before), ("this tree", PROJECT_DIR)):
                    tag = len(results[args.rev]) * 2 + len(results["this tree"]) + 1
                    result = measure(tree, Path(tmp) / f"data-{tag}", secret, args.seconds, tag)
                    results[name].append(result)
                    summary = result.summary()
                    print(
                        f"round {round_no} {name:>10}: {summary['requests_per_s']:7.1f} req/s, "
                        f"p99 {summary['p99_ms']:.1f} ms, non-2xx {summary['non_2xx']}, errors {summary['errors']}"
                    )
        finally:
            git("worktree", "remove", "--force", str(before))
    rates = {name: sum(r.count for r in runs) / sum(r.elapsed for r in runs) for name, runs in results.items()}
    p99s = {
        name: statistics.median(loadgen.percentile(r.latencies, 99) for r in runs) for name, runs in results.items()
    }
    print(
        f"pooled: {args.rev} {rates[args.rev]:.1f} req/s, this tree {rates['this tree']:.1f} req/s, "
        f"ratio {rates['this tree'] / rates[args.rev]:.3f}; median p99 {p99s[args.rev] * 1000:.1f} ms vs "
        f"{p99s['this tree'] * 1000:.1f} ms"
    )


if __name__ == "__main__":
    main()
