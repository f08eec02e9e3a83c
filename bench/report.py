"""The results: the machine they were measured on, each target with its measured value and PASS or
MISS, and the figures of every part, as JSON (for tools) and a Markdown table (for people)."""

import json
import os
import platform
import subprocess
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.procs import PROJECT_DIR

THROUGHPUT_GOAL = 0.6  # this service's requests/s, as a share of the ceiling's


@dataclass(frozen=True)
class Target:
    name: str
    goal: str
    measured: str
    passed: bool | None  # None: the part that measures it did not run, or failed

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "MISS", None: "n/a"}[self.passed]


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.partition(":")[2].strip()
                break
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def conditions(directory: Path) -> dict[str, Any]:
    """How busy the shared machine is now: its load average and its disk's fsync latency."""
    return {"load_average": [round(x, 2) for x in os.getloadavg()], "fsync": fsync_latency(directory)}


def fsync_latency(directory: Path, samples: int = 100) -> dict[str, float]:
    """How long an fsync of a 4 KiB append takes now, where the databases are (ms). Every durable
    acknowledgement waits for one, and other work on a shared machine's disk changes it a lot."""
    timings = []
    path = directory / "fsync-probe"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for _ in range(samples):
            os.write(descriptor, b"x" * 4096)
            started = time.perf_counter()
            os.fsync(descriptor)
            timings.append(time.perf_counter() - started)
    finally:
        os.close(descriptor)
        path.unlink()
    timings.sort()
    return {"p50_ms": round(timings[len(timings) // 2] * 1000, 3), "p99_ms": round(timings[-2] * 1000, 3)}


def git() -> dict[str, Any]:
    def run(*args: str) -> str:
        try:
            done = subprocess.run(  # noqa: S603 -- git, on this repository
                ["git", *args],  # noqa: S607 -- git from PATH, as a developer runs it
                cwd=PROJECT_DIR,
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout.strip()

    return {"commit": run("rev-parse", "HEAD") or "unknown", "uncommitted_changes": bool(run("status", "--porcelain"))}


def targets(results: dict[str, Any]) -> list[Target]:
    found: list[Target] = []
    acks = results.get("acknowledgement")
    if acks:
        ceiling = acks["ceiling"]["requests_per_s"]
        slow = next(k for k in acks if k.startswith("service@") and k != "service@0ms")
        inline_slow = next(k for k in acks if k.startswith("inline@") and k != "inline@0ms")
        fast_rate, slow_rate = acks["service@0ms"]["requests_per_s"], acks[slow]["requests_per_s"]
        worst = min(fast_rate, slow_rate)
        floor = acks["floor"]["requests_per_s"] / ceiling
        reachable = "so no durable receiver meets 60 % here" if floor < 0.6 else "so 60 % is within reach here"
        # A second look that does not depend on the server's threads: the CPU the floor's server and the
        # generator (whose CPU grows with the rate it drives) would need at 60 % of the ceiling's rate.
        at_target = 0.6 * ceiling
        floor_cores = acks["floor"]["server_cpu_ms_per_request"] / 1000 * at_target
        generator_cores = acks["ceiling"]["loadgen_cpu_share"] * 0.6
        found.append(
            Target(
                "this service's throughput vs the ceiling",
                "≥ 60 %",
                f"{worst / ceiling:.0%} ({fast_rate:.0f}/s at API 0 ms, {slow_rate:.0f}/s at "
                f"{acks[slow]['api_delay_ms']} ms; ceiling {ceiling:.0f}/s; the lower counts). "
                f"The floor, a bare verify and a group-committed durable insert, reaches {floor:.0%}, {reachable}. "
                f"At 60 % of the ceiling ({at_target:.0f}/s) the floor's server would use {floor_cores:.2f} cores "
                f"and the generator {generator_cores:.2f}: {floor_cores + generator_cores:.2f} of the "
                f"{len(os.sched_getaffinity(0))} cores",
                worst / ceiling >= 0.6,
            )
        )
        fast_p99, slow_p99 = acks["service@0ms"]["p99_ms"], acks[slow]["p99_ms"]
        found.append(
            Target(
                f"this service's p99 at API {acks[slow]['api_delay_ms']} ms vs at 0 ms",
                "≤ 1.5 ×",
                f"{slow_p99 / fast_p99:.2f} × ({slow_p99:.1f} ms vs {fast_p99:.1f} ms)",
                slow_p99 <= 1.5 * fast_p99,
            )
        )
        delay = acks[inline_slow]["api_delay_ms"]
        inline_p99 = acks[inline_slow]["p99_ms"]
        found.append(
            Target(
                f"inline baseline's p99 at API {delay} ms",
                f"≥ {delay} ms (it waits for the API)",
                f"{inline_p99:.0f} ms",
                inline_p99 >= delay,
            )
        )
    else:
        found += [Target(name, goal, "not measured", None) for name, goal in _ACK_TARGETS]
    e2e = results.get("end_to_end")
    for threads in ("4", "16"):
        figures = e2e["by_threads"].get(threads) if e2e else None
        name = f"end-to-end at WORKER_THREADS={threads} vs ideal"
        if figures:
            found.append(
                Target(
                    name,
                    "≥ 80 %",
                    f"{figures['share_of_ideal']:.0%} ({figures['deliveries_per_s']:.1f}/s of "
                    f"{figures['ideal_per_s']:.0f}/s)",
                    figures["share_of_ideal"] >= 0.8,
                )
            )
        else:
            found.append(Target(name, "≥ 80 %", "not measured", None))
    growth = results.get("growth")
    for key, label in (("ack_median_ms", "acknowledgement"), ("dead_listing_median_ms", "dead listing")):
        if growth:
            small, large = (growth[k] for k in sorted(growth, key=int))
            ratio = large[key] / small[key]
            found.append(
                Target(
                    f"{label} at {large['rows']:,} rows vs {small['rows']:,}",
                    "≤ 2 ×",
                    f"{ratio:.2f} × ({large[key]:.2f} ms vs {small[key]:.2f} ms, medians)",
                    ratio <= 2,
                )
            )
        else:
            found.append(Target(f"{label} with a large inbox vs a small one", "≤ 2 ×", "not measured", None))
    memory = results.get("memory")
    if memory:
        found.append(
            Target(
                f"peak RSS of python main.py over {memory['deliveries']:,} deliveries",
                "< 150 MB",
                f"{memory['peak_rss_mb']:.1f} MB",
                memory["peak_rss_mb"] < 150,
            )
        )
        at = memory["rss_mb_at_done"]
        found.append(
            Target(
                "RSS growth after warm-up (25 % → 100 % done)",
                "≤ 10 % (flat)",
                f"{memory['growth_after_warmup']:+.1%} ({at['25%']} → {at['50%']} → {at['75%']} → {at['100%']} MB)",
                memory["growth_after_warmup"] <= 0.10,
            )
        )
    else:
        found += [Target("peak RSS", "< 150 MB", "not measured", None)]
        found += [Target("RSS growth after warm-up", "≤ 10 % (flat)", "not measured", None)]
    return found


_ACK_TARGETS = (
    ("this service's throughput vs the ceiling", "≥ 60 %"),
    ("this service's p99 at a slow API vs at 0 ms", "≤ 1.5 ×"),
    ("inline baseline's p99 at a slow API", "≥ the API's delay"),
)


def document(
    run: dict[str, Any], results: dict[str, Any], failures: dict[str, str], found: list[Target]
) -> dict[str, Any]:
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git(),
        "machine": machine(),
        "run": run,
        "targets": [asdict(t) | {"verdict": t.verdict} for t in found],
        "results": results,
        "failures": failures,
    }


def write(directory: Path, doc: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "latest.json").write_text(json.dumps(doc, indent=2) + "\n")
    markdown = directory / "latest.md"
    markdown.write_text(to_markdown(doc))
    return markdown


def to_markdown(doc: dict[str, Any]) -> str:
    run, results, machine_ = doc["run"], doc["results"], doc["machine"]
    commit = doc["git"]["commit"][:12] + (" with uncommitted changes" if doc["git"]["uncommitted_changes"] else "")
    server = run["server"]
    lines = [
        f"# Benchmark results ({run['size']} run)",
        "",
        f"{doc['date']}, commit {commit}. Machine: {machine_['nproc']} × {machine_['cpu_model']}, "
        f"Python {machine_['python']}, {machine_['platform']}.",
        "",
        _conditions(run.get("conditions", {})),
        "",
        f"Every HTTP mode ran under {server['server']} ({server['worker_class']}, {server['workers']} workers × "
        f"{server['threads']} threads) behind the same closed-loop generator ({run['generator']['processes']} "
        f"processes × {run['generator']['connections']} keep-alive connections on 127.0.0.1), every delivery "
        "signed with svix and its own svix-id; the OptiPick API was the stand-in on loopback.",
        "",
        "## Targets",
        "",
        "| target | goal | measured | result |",
        "|---|---|---|---|",
        *(f"| {t['name']} | {t['goal']} | {t['measured']} | **{t['verdict']}** |" for t in doc["targets"]),
    ]
    for failed, reason in doc["failures"].items():
        lines += ["", f"**{failed} failed:** `{reason.splitlines()[0] if reason else ''}`"]
    if "acknowledgement" in results:
        lines += _acks(results["acknowledgement"])
    if "request_path" in results:
        lines += _request_path(results["request_path"], results.get("acknowledgement"))
    if "end_to_end" in results:
        lines += _e2e(results["end_to_end"])
    if "growth" in results:
        lines += _growth(results["growth"])
    if "memory" in results:
        lines += _memory(results["memory"])
    return "\n".join(lines) + "\n"


def _conditions(conditions: dict[str, Any]) -> str:
    def one(moment: str) -> str:
        now = conditions.get(moment)
        if not now:
            return f"{moment}: not recorded"
        load = ", ".join(str(x) for x in now["load_average"])
        return f"{moment}: load average {load}, fsync p50 {now['fsync']['p50_ms']} ms / p99 {now['fsync']['p99_ms']} ms"

    return (
        f"The machine is shared, so compare ratios measured side by side. Conditions at the {one('start')}; "
        f"at the {one('end')}."
    )


def _acks(acks: dict[str, Any]) -> list[str]:
    ceiling = acks["ceiling"]["requests_per_s"]
    rows = [
        "",
        "## Acknowledgement: requests/s and latency until the answer",
        "",
        "| mode | API delay | requests/s | vs ceiling | p50 ms | p90 ms | p99 ms | max ms | non-2xx | errors "
        "| server CPU ms/request |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for figures in acks.values():
        delay = "–" if figures["api_delay_ms"] is None else f"{figures['api_delay_ms']} ms"
        rows.append(
            f"| {figures['label']} | {delay} | {figures['requests_per_s']:.0f} | "
            f"{figures['requests_per_s'] / ceiling:.0%} | {figures['p50_ms']:.1f} | {figures['p90_ms']:.1f} | "
            f"{figures['p99_ms']:.1f} | {figures['max_ms']:.1f} | {figures['non_2xx']} | {figures['errors']} | "
            f"{figures['server_cpu_ms_per_request']:.2f} |"
        )
    generator = acks["ceiling"]["loadgen_cpu_share"]
    best = max(acks[k]["requests_per_s"] for k in acks if k.startswith("service@"))
    rows += [
        "",
        f"The generator is not the limit: it drove the ceiling at {ceiling / best:.1f} × this service's best rate, "
        f"using {generator:.2f} of a core's time per second while doing so "
        f"(of {len(os.sched_getaffinity(0))} cores). "
        "This service's phases ran with `python main.py worker` processing beside gunicorn.",
        "",
        "The floor (`bench.apps:floor()`) is the least a receiver can do and still answer only after a durable "
        "commit: verify with svix, one plain SQL insert into SQLite with synchronous=FULL, committed the way "
        "this service commits (deliveries that arrive together share a commit, the writers take turns on a "
        "lock); no statement building, queue, log line or JSON. What it loses against the ceiling is the price "
        "of durability on this server and disk, which no receiver that keeps the promise avoids.",
    ]
    return rows


PATH_STEPS = {
    "verify": "verify the signature (svix)",
    "read": "read the payload (intake)",
    "insert_cpu": "insert, synchronous=OFF (its CPU)",
    "insert": "insert, synchronous=FULL (as served)",
    "enqueue": "enqueue (Huey, SQLite)",
}


def _request_path(path: dict[str, Any], acks: dict[str, Any] | None) -> list[str]:
    steps, cpu = path["steps_ms"], path["own_steps_cpu_ms"]
    rows = [
        "",
        f"## Request path: each step alone, in one thread (median of {path['runs']} runs)",
        "",
        "| step | ms |",
        "|---|---|",
        *(f"| {label} | {steps[key]:.3f} |" for key, label in PATH_STEPS.items()),
        f"| **this service's own steps, as served** | **{path['own_steps_ms']:.3f}** |",
        f"| of which CPU (the insert without its fsync) | {cpu:.3f} |",
    ]
    if not acks:
        return rows
    ceiling = acks["ceiling"]["server_cpu_ms_per_request"]
    floor = acks["floor"]["server_cpu_ms_per_request"]
    service = min(acks[key]["server_cpu_ms_per_request"] for key in acks if key.startswith("service@"))
    budget = ceiling * (1 / THROUGHPUT_GOAL - 1)
    commits = 1000 / steps["insert"]
    asked = THROUGHPUT_GOAL * acks["ceiling"]["requests_per_s"]
    return [
        *rows,
        "",
        f"- CPU the steps may add at {THROUGHPUT_GOAL:.0%} of the ceiling's rate: {budget:.2f} ms per request; "
        f"theirs: {cpu:.2f} ms ({cpu / budget:.1f} ×), {'within' if cpu <= budget else 'over'}.",
        f"- One durable commit per delivery: at most {commits:,.0f}/s on this disk, against {asked:,.0f}/s asked: "
        f"{'enough' if commits >= asked else 'too few, so deliveries must share commits'}.",
        f"- Server CPU per request under load: this service {service:.2f} ms, the floor {floor:.2f} ms, the ceiling "
        f"{ceiling:.2f} ms: {service - ceiling:.2f} and {floor - ceiling:.2f} ms over the ceiling, against "
        f"{cpu:.2f} ms for this service's steps alone.",
    ]


def _e2e(e2e: dict[str, Any]) -> list[str]:
    rows = [
        "",
        f"## End-to-end: deliveries reaching `done` per second (API {e2e['api_delay_ms']} ms per fetch)",
        "",
        "| WORKER_THREADS | deliveries | done/s | ideal/s | share of ideal | worker CPU ms/delivery "
        "| worker CPU (cores) |",
        "|---|---|---|---|---|---|---|",
    ]
    for threads, figures in e2e["by_threads"].items():
        rows.append(
            f"| {threads} | {figures['deliveries']} | {figures['deliveries_per_s']:.1f} | "
            f"{figures['ideal_per_s']:.0f} | {figures['share_of_ideal']:.0%} | "
            f"{figures.get('worker_cpu_ms_per_delivery', '–')} | {figures.get('worker_cpu_share', '–')} |"
        )
    return rows


def _growth(growth: dict[str, Any]) -> list[str]:
    rows = [
        "",
        "## Growth: cost with a small and a large inbox",
        "",
        "| inbox rows | seeded in | ack median | ack p90 | dead listing median | dead listing p90 | "
        "reconciler pass | `main.py events --status dead` |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for figures in growth.values():
        rows.append(
            f"| {figures['rows']:,} | {figures['seed_seconds']:.1f} s | {figures['ack_median_ms']:.2f} ms | "
            f"{figures['ack_p90_ms']:.2f} ms | {figures['dead_listing_median_ms']:.2f} ms | "
            f"{figures['dead_listing_p90_ms']:.2f} ms | {figures['reconcile_pass_ms']:.2f} ms | "
            f"{figures['cli_events_dead']['seconds']:.2f} s |"
        )
    return rows


def _memory(memory: dict[str, Any]) -> list[str]:
    at = memory["rss_mb_at_done"]
    return [
        "",
        f"## Memory: `python main.py` receiving and processing {memory['deliveries']:,} deliveries",
        "",
        "| idle | 25 % done | 50 % | 75 % | 100 % | peak (VmHWM) | seconds |",
        "|---|---|---|---|---|---|---|",
        f"| {memory['idle_rss_mb']} MB | {at['25%']} MB | {at['50%']} MB | {at['75%']} MB | {at['100%']} MB | "
        f"{memory['peak_rss_mb']} MB | {memory['seconds']} |",
    ]
