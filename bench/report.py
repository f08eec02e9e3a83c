"""The results: the machine they were measured on, each target with its measured value and PASS or
MISS, and the figures of every part, as JSON (for tools) and Markdown tables (for people). What the
figures mean and how the targets are judged is bench/README.md's to say; the report links to it."""

import json
import os
import platform
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.procs import PROJECT_DIR

README = Path(__file__).resolve().parent / "README.md"
THROUGHPUT_GOAL = 0.6  # this service's requests/s, as a share of the ceiling's


@dataclass(frozen=True)
class Target:
    name: str
    goal: str
    measured: str = "not measured"
    passed: bool | None = None  # None: the part that measures it did not run, or failed

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


Judged = tuple[str, bool]  # what a target's part measured, in a few words, and whether it met the goal


def _throughput(acks: dict[str, Any]) -> Judged:
    ceiling = acks["ceiling"]["requests_per_s"]
    slow = _slow_key(acks, "service")
    fast_rate, slow_rate = acks["service@0ms"]["requests_per_s"], acks[slow]["requests_per_s"]
    share = min(fast_rate, slow_rate) / ceiling
    floor = acks["floor"]["requests_per_s"] / ceiling
    at_goal = THROUGHPUT_GOAL * ceiling
    floor_cores = acks["floor"]["server_cpu_ms_per_request"] / 1000 * at_goal
    generator_cores = acks["ceiling"]["loadgen_cpu_share"] * THROUGHPUT_GOAL
    return (
        f"{share:.0%} ({fast_rate:.0f}/s at API 0 ms, {slow_rate:.0f}/s at {acks[slow]['api_delay_ms']} ms, the "
        f"lower counts; ceiling {ceiling:.0f}/s). The floor reaches {floor:.0%}: the goal is "
        f"{'within reach' if floor >= THROUGHPUT_GOAL else 'out of reach'} here. At {at_goal:.0f}/s the floor's "
        f"server would use {floor_cores:.2f} cores and the generator {generator_cores:.2f}: "
        f"{floor_cores + generator_cores:.2f} in all",
        share >= THROUGHPUT_GOAL,
    )


def _slow_api_p99(acks: dict[str, Any]) -> Judged:
    slow = _slow_key(acks, "service")
    fast, slow_p99 = acks["service@0ms"]["p99_ms"], acks[slow]["p99_ms"]
    return (
        f"{slow_p99 / fast:.2f} × ({slow_p99:.1f} ms at {acks[slow]['api_delay_ms']} ms, {fast:.1f} ms at 0 ms)",
        slow_p99 <= 1.5 * fast,
    )


def _inline_p99(acks: dict[str, Any]) -> Judged:
    slow = acks[_slow_key(acks, "inline")]
    return f"{slow['p99_ms']:.0f} ms at API {slow['api_delay_ms']} ms", slow["p99_ms"] >= slow["api_delay_ms"]


def _e2e_share(threads: str) -> Callable[[dict[str, Any]], Judged]:
    def judged(e2e: dict[str, Any]) -> Judged:
        figures = e2e["by_threads"][threads]
        return (
            f"{figures['share_of_ideal']:.0%} ({figures['deliveries_per_s']:.1f}/s of {figures['ideal_per_s']:.0f}/s)",
            figures["share_of_ideal"] >= 0.8,
        )

    return judged


def _growth_ratio(key: str) -> Callable[[dict[str, Any]], Judged]:
    def judged(growth: dict[str, Any]) -> Judged:
        small, large = (growth[rows] for rows in sorted(growth, key=int))
        ratio = large[key] / small[key]
        return (
            f"{ratio:.2f} × ({large[key]:.2f} ms at {large['rows']:,} rows, {small[key]:.2f} ms at {small['rows']:,})",
            ratio <= 2,
        )

    return judged


def _peak_rss(memory: dict[str, Any]) -> Judged:
    return f"{memory['peak_rss_mb']:.1f} MB over {memory['deliveries']:,} deliveries", memory["peak_rss_mb"] < 150


def _rss_growth(memory: dict[str, Any]) -> Judged:
    at = memory["rss_mb_at_done"]
    return (
        f"{memory['growth_after_warmup']:+.1%} ({at['25%']} → {at['50%']} → {at['75%']} → {at['100%']} MB)",
        memory["growth_after_warmup"] <= 0.10,
    )


# Each target: its name, its goal, the part that measures it, and how that part's figures are judged.
TARGETS: tuple[tuple[str, str, str, Callable[[dict[str, Any]], Judged]], ...] = (
    ("this service's throughput vs the ceiling", f"≥ {THROUGHPUT_GOAL * 100:.0f} %", "acknowledgement", _throughput),
    ("this service's p99 at the slow API vs at 0 ms", "≤ 1.5 ×", "acknowledgement", _slow_api_p99),
    ("inline baseline's p99 at the slow API", "≥ the API's delay", "acknowledgement", _inline_p99),
    ("end-to-end at WORKER_THREADS=4 vs ideal", "≥ 80 %", "end_to_end", _e2e_share("4")),
    ("end-to-end at WORKER_THREADS=16 vs ideal", "≥ 80 %", "end_to_end", _e2e_share("16")),
    ("acknowledgement, large inbox vs small (medians)", "≤ 2 ×", "growth", _growth_ratio("ack_median_ms")),
    ("dead listing, large inbox vs small (medians)", "≤ 2 ×", "growth", _growth_ratio("dead_listing_median_ms")),
    ("peak RSS of python main.py", "< 150 MB", "memory", _peak_rss),
    ("RSS growth after warm-up (25 % → 100 % done)", "≤ 10 %", "memory", _rss_growth),
)


def targets(results: dict[str, Any]) -> list[Target]:
    return [
        Target(name, goal, *judge(results[part])) if part in results else Target(name, goal)
        for name, goal, part, judge in TARGETS
    ]


def _slow_key(acks: dict[str, Any], mode: str) -> str:
    """The phase key of `mode` at the slow API (the other one is at 0 ms)."""
    return next(key for key in acks if key.startswith(f"{mode}@") and key != f"{mode}@0ms")


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
    markdown.write_text(to_markdown(doc, readme=os.path.relpath(README, directory.resolve())))
    return markdown


def to_markdown(doc: dict[str, Any], readme: str = "../README.md") -> str:
    run, results, machine_ = doc["run"], doc["results"], doc["machine"]
    commit = doc["git"]["commit"][:12] + (" with uncommitted changes" if doc["git"]["uncommitted_changes"] else "")
    server, generator = run["server"], run["generator"]
    lines = [
        f"# Benchmark results ({run['size']} run)",
        "",
        f"{doc['date']}, commit {commit}, a run of {run['seconds']:.0f} s. Machine: {machine_['nproc']} × "
        f"{machine_['cpu_model']}, Python {machine_['python']}, {machine_['platform']}.",
        "",
        f"What each figure means, and how the targets are judged: [bench/README.md]({readme}).",
        "",
        f"Conditions at the {_conditions(run, 'start')}; at the {_conditions(run, 'end')}. "
        f"Server: {server['server']} ({server['worker_class']}, {server['workers']} workers × {server['threads']} "
        f"threads). Generator: {generator['processes']} processes × {generator['connections']} keep-alive "
        "connections, closed loop.",
        *_section(
            "Targets",
            "target | goal | measured | result",
            (f"{t['name']} | {t['goal']} | {t['measured']} | **{t['verdict']}**" for t in doc["targets"]),
        ),
    ]
    for failed, reason in doc["failures"].items():
        lines += ["", f"**{failed} failed:** `{reason.splitlines()[0] if reason else ''}`"]
    acks = results.get("acknowledgement")
    if acks:
        lines += _acks(acks)
    if "request_path" in results:
        lines += _request_path(results["request_path"], acks)
    if "end_to_end" in results:
        lines += _e2e(results["end_to_end"])
    if "growth" in results:
        lines += _growth_table(results["growth"])
    if "memory" in results:
        lines += _memory(results["memory"])
    if "servers" in results:
        lines += _servers(results["servers"])
    return "\n".join(lines) + "\n"


def _section(title: str, header: str, rows: Iterable[str]) -> list[str]:
    """A section of the report: its title, and a table under `header` ("a | b | …") of `rows` (the same)."""
    return [
        "",
        f"## {title}",
        "",
        f"| {header} |",
        "|" + "---|" * (header.count(" | ") + 1),
        *(f"| {r} |" for r in rows),
    ]


def _conditions(run: dict[str, Any], moment: str) -> str:
    now = run.get("conditions", {}).get(moment)
    if not now:
        return f"{moment}: not recorded"
    load = ", ".join(str(x) for x in now["load_average"])
    return f"{moment}: load average {load}, fsync p50 {now['fsync']['p50_ms']} ms / p99 {now['fsync']['p99_ms']} ms"


def _acks(acks: dict[str, Any]) -> list[str]:
    ceiling = acks["ceiling"]["requests_per_s"]
    best = max(acks[key]["requests_per_s"] for key in acks if key.startswith("service@"))
    margin = ceiling / best
    rows = []
    for f in acks.values():
        delay = "–" if f["api_delay_ms"] is None else f"{f['api_delay_ms']} ms"
        rows.append(
            f"{f['label']} | {delay} | {f['requests_per_s']:.0f} | {f['requests_per_s'] / ceiling:.0%} | "
            f"{f['p50_ms']:.1f} | {f['p90_ms']:.1f} | {f['p99_ms']:.1f} | {f['max_ms']:.1f} | {f['non_2xx']} | "
            f"{f['errors']} | {f['server_cpu_ms_per_request']:.2f}"
        )
    return [
        *_section(
            "Acknowledgement: requests/s and latency until the answer",
            "mode | API delay | requests/s | vs ceiling | p50 ms | p90 ms | p99 ms | max ms | non-2xx | errors | "
            "server CPU ms/request",
            rows,
        ),
        "",
        f"Generator: {acks['ceiling']['loadgen_cpu_share']:.2f} cores while it drove the ceiling at {margin:.1f} × "
        f"this service's best rate: {'not the limit' if margin >= 1.5 else 'possibly the limit'}.",
    ]


PATH_STEPS = {
    "verify": "verify the signature (svix)",
    "read": "read the payload (intake)",
    "insert_cpu": "insert, synchronous=OFF (its CPU)",
    "insert": "insert, synchronous=FULL (as served)",
    "enqueue": "enqueue (Huey, SQLite)",
}


def _request_path(path: dict[str, Any], acks: dict[str, Any] | None) -> list[str]:
    steps, cpu = path["steps_ms"], path["own_steps_cpu_ms"]
    rows = _section(
        f"Request path: each step alone, in one thread (median of {path['runs']} runs)",
        "step | ms",
        [
            *(f"{label} | {steps[key]:.3f}" for key, label in PATH_STEPS.items()),
            f"**this service's own steps, as served** | **{path['own_steps_ms']:.3f}**",
            f"of which CPU (the insert without its fsync) | {cpu:.3f}",
        ],
    )
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
        f"- CPU the steps may add at {THROUGHPUT_GOAL * 100:.0f} % of the ceiling's rate: {budget:.2f} ms per request; "
        f"theirs: {cpu:.2f} ms ({cpu / budget:.1f} ×), {'within' if cpu <= budget else 'over'}.",
        f"- One durable commit per delivery: at most {commits:,.0f}/s on this disk, against {asked:,.0f}/s asked: "
        f"{'enough' if commits >= asked else 'too few, so deliveries must share commits'}.",
        f"- Server CPU per request under load: this service {service:.2f} ms, the floor {floor:.2f} ms, the ceiling "
        f"{ceiling:.2f} ms: {service - ceiling:.2f} and {floor - ceiling:.2f} ms over the ceiling, against "
        f"{cpu:.2f} ms for this service's steps alone.",
    ]


def _e2e(e2e: dict[str, Any]) -> list[str]:
    return _section(
        f"End-to-end: deliveries reaching `done` per second (API {e2e['api_delay_ms']} ms per fetch)",
        "WORKER_THREADS | deliveries | done/s | ideal/s | share of ideal | worker CPU ms/delivery | worker CPU (cores)",
        (
            f"{threads} | {f['deliveries']} | {f['deliveries_per_s']:.1f} | {f['ideal_per_s']:.0f} | "
            f"{f['share_of_ideal']:.0%} | {f.get('worker_cpu_ms_per_delivery', '–')} | {f.get('worker_cpu_share', '–')}"
            for threads, f in e2e["by_threads"].items()
        ),
    )


def _growth_table(growth: dict[str, Any]) -> list[str]:
    return _section(
        "Growth: cost with a small and a large inbox",
        "inbox rows | seeded in | ack median | ack p90 | dead listing median | dead listing p90 | reconciler pass | "
        "`main.py events --status dead`",
        (
            f"{f['rows']:,} | {f['seed_seconds']:.1f} s | {f['ack_median_ms']:.2f} ms | {f['ack_p90_ms']:.2f} ms | "
            f"{f['dead_listing_median_ms']:.2f} ms | {f['dead_listing_p90_ms']:.2f} ms | "
            f"{f['reconcile_pass_ms']:.2f} ms | {f['cli_events_dead']['seconds']:.2f} s"
            for f in growth.values()
        ),
    )


def _memory(memory: dict[str, Any]) -> list[str]:
    at = memory["rss_mb_at_done"]
    return _section(
        f"Memory: `python main.py` receiving and processing {memory['deliveries']:,} deliveries",
        "idle | 25 % done | 50 % | 75 % | 100 % | peak (VmHWM) | seconds",
        [
            f"{memory['idle_rss_mb']} MB | {at['25%']} MB | {at['50%']} MB | {at['75%']} MB | {at['100%']} MB | "
            f"{memory['peak_rss_mb']} MB | {memory['seconds']}"
        ],
    )


def _servers(servers: dict[str, Any]) -> list[str]:
    sizes, candidates = servers["sizes"], servers["candidates"]
    base = candidates.get("gthread", {}).get("throughput", {}).get("requests_per_s")
    load_rows, stop_rows = [], []
    for f in candidates.values():
        t, h = f["throughput"], f["held"]
        versus = f"{t['requests_per_s'] / base:.2f} ×" if base else "–"
        reopened = sum(r["reopened"] for r in h["rounds"])
        by_kind = ", ".join(str(h["by_kind"][kind]) for kind in ("idle", "headers", "bodies"))
        load_rows.append(
            f"{f['label']} | {t['requests_per_s']:.0f} | {versus} | {t['p50_ms']:.1f} | {t['p99_ms']:.1f} | "
            f"{t['non_2xx'] + t['errors']} | {t['server_cpu_ms_per_request']} | "
            f"**{h['acknowledged_in_time']} of {h['probes']}** | {_ms(h['p50_ms'])} | {_ms(h['max_ms'])} | "
            f"{reopened} | {by_kind} of {h['by_kind_probes']}"
        )
        stops = f["stop"]
        framing = f["framing"]
        stop_rows.append(
            f"{f['label']} | "
            + " | ".join(_framed(framing[k]) for k in ("te_and_cl", "two_lengths", "big_header"))
            + f" | {sum(s['answered_200'] for s in stops)} of {sum(s['in_flight'] for s in stops)} | "
            f"{', '.join(str(s['exit_codes']) for s in stops)} | {', '.join(str(s['exit_seconds']) for s in stops)}"
        )
    held = f"{sizes['idle']} idle and {sizes['slow']} slow connections held"
    lines = [
        *_section(
            "Servers: the service under each candidate, and with slow clients",
            f"server | requests/s | vs gthread | p50 ms | p99 ms | non-2xx + errors | server CPU ms/request | "
            f"{held}: acknowledged within {sizes['ack_within_s']:.0f} s | probe p50 ms | probe max ms | reopened | "
            "each kind alone (idle, slow headers, slow bodies): within 1 s",
            load_rows,
        ),
        *_section(
            "Servers: framing answers and a graceful stop",
            "server | TE + CL | two lengths | 100 KB header | in flight at the stop: answered 200 | exit status | "
            "seconds from the signal to the exit",
            stop_rows,
        ),
    ]
    for name, why in servers.get("skipped", {}).items():
        lines += ["", f"{name}: skipped, {why}."]
    return lines


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _framed(answer: dict[str, Any]) -> str:
    """A framing answer in a few words: its status and whether the body was JSON; 401 is the service's."""
    status = answer["status"]
    if status is None:
        return "closed, no answer"
    if status == 401:
        return "let through (the service's 401)"
    content_type = answer["content_type"] or "empty"
    kind = "JSON" if content_type.startswith("application/json") else content_type
    return f"{status}, {kind.split(';')[0]}"
