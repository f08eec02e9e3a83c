"""Run the benchmark: `python -m bench` (the full run) or `python -m bench --smoke` (tiny sizes).

Runs each part in turn (PARTS), writes bench/results/latest.json and latest.md (and latency.png when
matplotlib is there), and prints the Markdown. Everything it starts is ended and its temporary
directory removed when it finishes, fails or is interrupted.

Exit status: 0 when every part produced its figures (a missed target is reported, not a failure,
unless --strict), 1 when a part failed to produce them, 3 with --strict when a target was missed,
130 when interrupted.
"""

import argparse
import logging
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import acks, e2e, growth, memory, report, request_path, servers
from bench.common import FULL, SMOKE, Bench, Server
from bench.plot import latency_plot
from bench.procs import Processes
from signatures import new_secret

log = logging.getLogger("bench")

# The parts, in the order they run.
PARTS: dict[str, Callable[[Bench, argparse.Namespace], dict[str, Any]]] = {
    "acknowledgement": lambda bench, args: acks.run(bench, args.slow_api_ms / 1000),
    "request_path": lambda bench, args: request_path.run(bench),
    "end_to_end": lambda bench, args: e2e.run(bench, args.e2e_api_ms / 1000),
    "growth": lambda bench, args: growth.run(bench),
    "memory": lambda bench, args: memory.run(bench),
    "servers": lambda bench, args: servers.run(bench),
}
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: proves the bench works, in under a minute")
    parser.add_argument("--only", nargs="+", choices=list(PARTS), default=list(PARTS), help="run only these parts")
    parser.add_argument("--slow-api-ms", type=int, default=500, help="the slow API's delay (default 500)")
    parser.add_argument("--e2e-api-ms", type=int, default=100, help="the API's delay end-to-end (default 100)")
    parser.add_argument(
        "--out",
        type=Path,
        help="where latest.json and latest.md go (default bench/results, or bench/results/smoke with --smoke, "
        "so a smoke run never replaces the full run's figures)",
    )
    parser.add_argument("--strict", action="store_true", help="exit 3 when a target is missed")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, databases)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.out = args.out or (RESULTS_DIR / "smoke" if args.smoke else RESULTS_DIR)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("werkzeug", "webhook", "huey"):  # the stand-in API's access log, the in-process app's lines
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # SIGTERM ends the run like Ctrl+C does: through every `finally`, so nothing started is left running.
    signal.signal(signal.SIGTERM, _interrupt)

    sizes = SMOKE if args.smoke else FULL
    server = Server()
    tmp = Path(tempfile.mkdtemp(prefix="optipick-bench-"))
    results: dict[str, Any] = {}
    failures: dict[str, str] = {}
    timings: dict[str, float] = {}
    started = time.monotonic()
    (tmp / "logs").mkdir()
    conditions = {"start": report.conditions(tmp)}
    try:
        with Processes(tmp / "logs") as processes:
            bench = Bench(tmp, processes, sizes, server, new_secret())
            for part, measure in PARTS.items():
                if part not in args.only:
                    continue
                log.info("== %s", part)
                part_started = time.monotonic()
                try:
                    results[part] = measure(bench, args)
                except Exception as exc:  # one part failing must not hide the others' figures
                    log.exception("%s failed", part)
                    failures[part] = f"{type(exc).__name__}: {exc}"
                finally:
                    processes.close()
                    timings[part] = round(time.monotonic() - part_started, 1)
                    log.info("== %s: %.0f s", part, timings[part])
            conditions["end"] = report.conditions(tmp)
    except KeyboardInterrupt:
        log.error("interrupted; everything started has been stopped")
        return 130
    finally:
        if args.keep:
            log.info("kept %s", tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    run = {
        "size": "smoke" if args.smoke else "full",
        "sizes": sizes.as_dict(),
        "server": server.as_dict(),
        "generator": {"processes": Bench.generator_processes, "connections": Bench.connections, "loop": "closed"},
        "parts": [p for p in PARTS if p in args.only],
        "seconds": round(time.monotonic() - started, 1),
        "part_seconds": timings,
        "conditions": conditions,
    }
    found = report.targets(results)
    doc = report.document(run, results, failures, found)
    markdown = report.write(args.out, doc)
    if "acknowledgement" in results:
        picture = latency_plot(results["acknowledgement"], args.out / "latency.png")
        log.info("latency plot: %s", picture or "skipped (matplotlib is not installed)")
    print(markdown.read_text())
    log.info("wrote %s and %s in %.0f s", args.out / "latest.json", markdown, run["seconds"])
    if failures:
        log.error("parts without figures: %s", ", ".join(failures))
        return 1
    if args.strict and any(t.passed is False for t in found):
        return 3
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    sys.exit(main())
