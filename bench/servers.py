"""Servers: which WSGI server keeps acknowledging while some clients are slow, side by side.

Every candidate serves the real service (`webapp:create_app()`, with `python main.py worker` beside
it processing what arrives, on temporary SQLite files and the stand-in API), and is booted once per
round; candidates are interleaved round by round, so the shared machine's drift hits them alike.
In each round, one after the other:

1. framing: a request with both Transfer-Encoding and Content-Length, one with two different
   Content-Lengths and one with a 100 KB header: the status each server answers, and whether the
   answer's body is JSON (an answer of the service itself, 401 here, means the server let it through);
2. throughput: the acknowledgement part's closed-loop generator (2 processes × 8 keep-alive
   connections): requests/s, latency, and the web side's CPU per request;
3. held: `idle` connections that send nothing and `slow` ones that send one byte every 2 s (half of
   them still in their headers, half in a body) are held open, each opened again whenever the server
   closes it, and meanwhile one signed delivery at a time, each on a new connection, for
   `probe_seconds`: how many are acknowledged (200) within 1 s; then each kind alone (`idle` silent,
   `slow` in their headers, `slow` in a body) with a few probes, to show which kind stops a server;
4. stop: the inbox's writers' lock is held so that `stop_deliveries` deliveries are in flight (inside
   the service, waiting for their commit), the server gets its stop signal, and the lock is released a
   second later: how many of those deliveries were answered 200, the exit status, and the seconds from
   the signal to the exit.

Everything is on 127.0.0.1, bounded in count and time, and stopped when the part ends.
"""

import contextlib
import http.client
import importlib.util
import logging
import os
import selectors
import shutil
import signal
import socket
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import acks, loadgen
from bench.common import SMOKE, Bench, next_tag, request_ids, stand_in
from bench.procs import HOST, Started, free_port, wait_healthy
from inbox import SqliteDatabase

log = logging.getLogger("bench")

ACK_WITHIN = 1.0  # seconds: a probe answered 200 within this was acknowledged in time
PROBE_TIMEOUT = 2.0  # seconds a probe waits for its answer
SLOW_INTERVAL = 2.0  # seconds between the bytes of a slow connection
SETTLE = 1.0  # seconds after the held connections are open before the probes start
KIND_PROBES = 3  # probes with each kind of held connection alone


@dataclass(frozen=True)
class ServerSizes:
    idle: int  # connections held open that send nothing
    slow: int  # connections held open that send a byte every SLOW_INTERVAL
    probe_seconds: float
    stop_deliveries: int  # deliveries in flight when the stop signal comes


FULL_SIZES = ServerSizes(idle=500, slow=100, probe_seconds=10.0, stop_deliveries=4)
SMOKE_SIZES = ServerSizes(idle=20, slow=10, probe_seconds=1.0, stop_deliveries=2)


@dataclass(frozen=True)
class Candidate:
    name: str
    label: str
    # Starts the web side on `port` and returns its processes, each with its graceful stop signal.
    start: Callable[[Bench, str, int, dict[str, str], Path], list[tuple[Started, int]]]
    program: str | None = None  # a program it needs besides Python; without it the candidate is skipped
    module: str | None = None  # a module it needs that requirements.txt does not install; the same


def _gthread(bench: Bench, name: str, port: int, settings: dict[str, str], data: Path) -> list[tuple[Started, int]]:
    web = bench.processes.start(name, bench.server.args(port, "webapp:create_app()"), settings)
    return [(web, signal.SIGTERM)]


def _gthread_nginx(
    bench: Bench, name: str, port: int, settings: dict[str, str], data: Path
) -> list[tuple[Started, int]]:
    upstream = free_port()
    web = bench.processes.start(name, bench.server.args(upstream, "webapp:create_app()"), settings)
    conf = data / "nginx.conf"
    conf.write_text(nginx_conf(data, port, upstream))
    nginx = bench.processes.start(f"{name}-nginx", ["-c", str(conf)], settings, program=_nginx() or "nginx")
    return [(nginx, signal.SIGQUIT), (web, signal.SIGTERM)]  # SIGQUIT: nginx's graceful stop (SIGTERM is fast)


def _granian(bench: Bench, name: str, port: int, settings: dict[str, str], data: Path) -> list[tuple[Started, int]]:
    args = ["-m", "granian", "--interface", "wsgi", "--factory", "--http", "1", "--host", HOST, "--port", str(port)]
    args += ["--workers", "2", "--blocking-threads", "4", "webapp:create_app"]
    return [(bench.processes.start(name, args, settings), signal.SIGTERM)]


def _waitress_serve(
    bench: Bench, name: str, port: int, settings: dict[str, str], data: Path
) -> list[tuple[Started, int]]:
    args = ["-m", "waitress", "--listen", f"{HOST}:{port}", "--threads", "8", "--connection-limit", "2000"]
    args += ["--asyncore-use-poll", "--call", "webapp:create_app"]
    return [(bench.processes.start(name, args, settings), signal.SIGTERM)]


def _main_web(bench: Bench, name: str, port: int, settings: dict[str, str], data: Path) -> list[tuple[Started, int]]:
    env = {**settings, "HOST": HOST, "PORT": str(port)}
    return [(bench.processes.start(name, ["main.py", "web"], env), signal.SIGTERM)]


CANDIDATES = (
    Candidate("gthread", "gunicorn gthread, 2 workers × 4 threads (the bench's layout)", _gthread),
    Candidate("gthread+nginx", "the same behind nginx, which buffers each request", _gthread_nginx, "nginx"),
    Candidate("granian", "granian WSGI, 2 workers × 4 blocking threads", _granian, module="granian"),
    Candidate("waitress-serve", "waitress's own waitress-serve, 8 threads, 2,000 connections", _waitress_serve),
    Candidate("main.py web", "`python main.py web`: waitress as http_server.py sets it up, 8 threads", _main_web),
)


def _nginx() -> str | None:
    return shutil.which("nginx", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))


def missing(candidate: Candidate) -> str | None:
    """Why `candidate` cannot run here, or None."""
    if candidate.program is not None and _nginx() is None:
        return f"{candidate.program} is not installed"
    if candidate.module is not None and importlib.util.find_spec(candidate.module) is None:
        return f"{candidate.module} is not installed (bench/requirements.txt)"
    return None


def nginx_conf(data: Path, port: int, upstream: int) -> str:
    """nginx in the foreground on 127.0.0.1:`port`, every file under `data`, buffering each request
    whole (and its answer) before it reaches gunicorn on `upstream`."""
    kinds = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    temp = "\n".join(f"    {kind}_temp_path {data / ('nginx-' + kind)};" for kind in kinds)
    user = "user root root;\n" if os.geteuid() == 0 else ""  # as root, its workers would otherwise be nobody's
    return f"""{user}daemon off;
worker_processes 1;
pid {data / "nginx.pid"};
error_log {data / "nginx-error.log"} warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
{temp}
    client_max_body_size 2m;
    client_header_timeout 10s;
    client_body_timeout 10s;
    keepalive_timeout 30s;
    upstream service {{ server 127.0.0.1:{upstream}; keepalive 16; }}
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://service;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_request_buffering on;
        }}
    }}
}}
"""


def run(bench: Bench) -> dict[str, Any]:
    """Every candidate, `bench.sizes.rounds` times interleaved; figures per candidate."""
    sizes = SMOKE_SIZES if bench.sizes == SMOKE else FULL_SIZES
    measured: dict[str, list[dict[str, Any]]] = {}
    skipped: dict[str, str] = {}
    for round_no in range(1, bench.sizes.rounds + 1):
        for candidate in CANDIDATES:
            why = missing(candidate)
            if why is not None:
                skipped[candidate.name] = why
                continue
            log.info("servers: %s, round %d of %d", candidate.name, round_no, bench.sizes.rounds)
            measured.setdefault(candidate.name, []).append(run_candidate(bench, sizes, candidate, round_no))
    labels = {c.name: c.label for c in CANDIDATES}
    return {
        "sizes": {**sizes.__dict__, "ack_within_s": ACK_WITHIN, "slow_interval_s": SLOW_INTERVAL},
        "candidates": {name: {"label": labels[name], **summarize(runs)} for name, runs in measured.items()},
        "skipped": skipped,
    }


def run_candidate(bench: Bench, sizes: ServerSizes, candidate: Candidate, round_no: int) -> dict[str, Any]:
    per_phase = bench.sizes.api_ids
    ids = request_ids(next_tag(), per_phase + 1)
    load_ids, probe_id = ids[:per_phase], ids[per_phase]
    data = bench.dir(f"servers-{candidate.name}-{round_no}")
    name = f"{candidate.name}-{round_no}"
    with stand_in(0.0, ids) as api, contextlib.ExitStack() as stack:
        port = free_port()
        settings = bench.receiver_settings(data, api.url)
        load = stack.enter_context(loadgen.Load(acks.phase_spec(bench, port, load_ids)))  # signs while booting
        web = candidate.start(bench, name, port, settings, data)
        worker = bench.processes.start(f"{name}-worker", ["main.py", "worker"], settings)
        processes = [p for p, _ in web]
        try:
            for process in processes:
                wait_healthy(process, port)
            acks.worker_ready(bench, port, data, probe_id, [*processes, worker])
            figures: dict[str, Any] = {"framing": framing(port)}
            cpu_before = sum(p.cpu_seconds() for p in processes)
            result = load.run()
            cpu = sum(p.cpu_seconds() for p in processes) - cpu_before
            answered = result.count + load.spec.warmup * load.spec.total_connections
            figures["load"] = result
            figures["server_cpu_ms_per_request"] = cpu / answered * 1000 if answered else None
            figures["held"] = held(bench, port, sizes, load_ids)
            figures["held_by_kind"] = held_by_kind(bench, port, sizes, load_ids)
            figures["stop"] = stop(bench, web, port, settings["DATABASE_URL"], sizes.stop_deliveries, load_ids)
        finally:
            worker.stop(signal.SIGTERM)
            for process in reversed(processes):
                process.stop(signal.SIGKILL, timeout=0)  # only what stop() left running
    return figures


# Framing ---------------------------------------------------------------------------------------------

FRAMINGS = {
    # Both lengths frame the same 5 bytes here, so a server that accepts it does not wait for more.
    "te_and_cl": b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "two_lengths": b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{} ",
    "big_header": b"X-Big: " + b"a" * 100_000 + b"\r\nContent-Length: 2\r\n\r\n{}",
}


def framing(port: int) -> dict[str, dict[str, Any]]:
    """The answer to each of FRAMINGS: status (None when the server closed without one) and whether it is JSON."""
    return {name: raw_request(port, tail) for name, tail in FRAMINGS.items()}


def raw_request(port: int, tail: bytes, timeout: float = 3.0) -> dict[str, Any]:
    head = b"POST /webhook/route HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nConnection: close\r\n"
    answer = b""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        try:
            sock.sendall(head + tail)
            while b"\r\n\r\n" not in answer or len(answer) < 4096:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                answer += chunk
        except OSError:  # reset, or no answer in time
            pass
    status_line, _, rest = answer.partition(b"\r\n")
    parts = status_line.split(b" ", 2)
    status = int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else None
    headers, _, body = rest.partition(b"\r\n\r\n")
    types = [line.split(b":", 1)[1] for line in headers.split(b"\r\n") if line.lower().startswith(b"content-type:")]
    content_type = types[0].strip().decode() if types else None
    return {"status": status, "content_type": content_type, "body": body[:80].decode(errors="replace")}


# Held connections -------------------------------------------------------------------------------------


class Holder:
    """`idle` connections that send nothing, and `headers` and `bodies` ones that send one byte every
    SLOW_INTERVAL, still in their headers or in a body they announced; each is opened again whenever
    the server closes it, until `close()`. One thread, one selector."""

    SLOW_HEADER = b"POST /webhook/route HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "
    SLOW_BODY = (
        b"POST /webhook/route HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 65536\r\n\r\n"
    )

    def __init__(self, port: int, idle: int = 0, headers: int = 0, bodies: int = 0) -> None:
        self.port = port
        self.kinds = ["idle"] * idle + ["header"] * headers + ["body"] * bodies
        self.selector = selectors.DefaultSelector()
        self.sockets: dict[int, socket.socket | None] = {}
        self.next_send: dict[int, float] = {}
        self.reopen_at: dict[int, float] = {}
        self.reopened = 0
        self.closed_by_server = 0
        self.failed_opens = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="holder", daemon=True)

    def __enter__(self) -> "Holder":
        for index in range(len(self.kinds)):
            self._open(index)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open_now(self) -> int:
        return sum(1 for s in self.sockets.values() if s is not None)

    def _open(self, index: int) -> None:
        try:
            sock = socket.create_connection((HOST, self.port), timeout=1.0)
        except OSError:
            self.failed_opens += 1
            self.sockets[index] = None
            self.reopen_at[index] = time.monotonic() + 0.5
            return
        kind = self.kinds[index]
        try:
            if kind != "idle":
                sock.sendall(self.SLOW_HEADER if kind == "header" else self.SLOW_BODY)
        except OSError:
            pass
        sock.setblocking(False)
        self.sockets[index] = sock
        self.selector.register(sock, selectors.EVENT_READ, index)
        self.next_send[index] = time.monotonic() + SLOW_INTERVAL

    def _drop(self, index: int) -> None:
        sock = self.sockets.get(index)
        if sock is not None:
            self.selector.unregister(sock)
            sock.close()
        self.sockets[index] = None
        self.closed_by_server += 1
        self.reopen_at[index] = time.monotonic() + 0.5  # as a client would, a moment later

    def _run(self) -> None:
        while not self._stop.is_set():
            for key, _ in self.selector.select(timeout=0.1):
                index = key.data
                try:
                    if not key.fileobj.recv(65536):  # type: ignore[union-attr]
                        self._drop(index)
                except BlockingIOError:
                    pass
                except OSError:
                    self._drop(index)
            now = time.monotonic()
            for index, sock in list(self.sockets.items()):
                if sock is None:
                    if now >= self.reopen_at[index]:
                        self.reopened += 1
                        self._open(index)
                elif self.kinds[index] != "idle" and now >= self.next_send[index]:
                    self.next_send[index] = now + SLOW_INTERVAL
                    try:
                        sock.send(b"a" if self.kinds[index] == "header" else b" ")
                    except BlockingIOError:
                        pass
                    except OSError:
                        self._drop(index)

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        for sock in self.sockets.values():
            if sock is not None:
                sock.close()
        self.sockets.clear()
        self.selector.close()


def probe(port: int, secret: str, request_id: str) -> tuple[int | None, float]:
    """One signed delivery on a new connection: its status (None: no answer in PROBE_TIMEOUT) and seconds."""
    started = time.monotonic()
    connection = http.client.HTTPConnection(HOST, port, timeout=PROBE_TIMEOUT)
    try:
        connection.request("POST", "/webhook/route", *loadgen.delivery(secret, f"msg_probe{next_tag()}", request_id))
        response = connection.getresponse()
        response.read()
        return response.status, time.monotonic() - started
    except (OSError, http.client.HTTPException):
        return None, time.monotonic() - started
    finally:
        connection.close()


def held(bench: Bench, port: int, sizes: ServerSizes, ids: tuple[str, ...]) -> dict[str, Any]:
    """Probes while the held connections are open."""
    probes: list[tuple[int | None, float]] = []
    with Holder(port, sizes.idle, sizes.slow // 2, sizes.slow - sizes.slow // 2) as holder:
        time.sleep(SETTLE)
        deadline = time.monotonic() + sizes.probe_seconds
        while time.monotonic() < deadline:
            probes.append(probe(port, bench.secret, ids[len(probes) % len(ids)]))
            time.sleep(0.05)
        open_at_end = holder.open_now()
        figures = {
            "held": len(holder.kinds),
            "open_at_end": open_at_end,
            "closed_by_server": holder.closed_by_server,
            "reopened": holder.reopened,
            "failed_opens": holder.failed_opens,
        }
    return {"probes": probes, **figures}


# Each kind of held connection alone: (idle, headers, bodies) as a share of the sizes.
KINDS = {"idle": (1, 0, 0), "headers": (0, 1, 0), "bodies": (0, 0, 1)}


def held_by_kind(bench: Bench, port: int, sizes: ServerSizes, ids: tuple[str, ...]) -> dict[str, int]:
    """KIND_PROBES probes with each kind of held connection alone (`idle` silent ones, or `slow` slow ones):
    how many were acknowledged within ACK_WITHIN, per kind. It shows which kind stops a server."""
    in_time = {}
    for kind, (idle, headers, bodies) in KINDS.items():
        with Holder(port, idle * sizes.idle, headers * sizes.slow, bodies * sizes.slow):
            time.sleep(SETTLE)
            probes = [probe(port, bench.secret, ids[i % len(ids)]) for i in range(KIND_PROBES)]
        in_time[kind] = sum(1 for status, seconds in probes if status == 200 and seconds <= ACK_WITHIN)
    return in_time


# Stopping ----------------------------------------------------------------------------------------------


def stop(
    bench: Bench, web: list[tuple[Started, int]], port: int, database_url: str, count: int, ids: tuple[str, ...]
) -> dict[str, Any]:
    """`count` deliveries held inside the service (their commit waits for the writers' lock), the stop
    signal, the lock released a second later; then what they were answered and how the server exited."""
    answers: list[int | str] = []
    lock = threading.Lock()

    def send(request_id: str) -> None:
        connection = http.client.HTTPConnection(HOST, port, timeout=20)
        try:
            body, headers = loadgen.delivery(bench.secret, f"msg_stop{next_tag()}", request_id)
            connection.request("POST", "/webhook/route", body, headers)
            response = connection.getresponse()
            response.read()
            answer: int | str = response.status
        except (OSError, http.client.HTTPException) as exc:
            answer = type(exc).__name__
        finally:
            connection.close()
        with lock:
            answers.append(answer)

    database = SqliteDatabase(database_url)
    senders = [threading.Thread(target=send, args=(ids[i],), daemon=True) for i in range(count)]
    try:
        with database.turn():  # every writer of the service waits for it now
            for sender in senders:
                sender.start()
            time.sleep(0.5)  # in the service by now, waiting for their commit
            signalled = time.monotonic()
            for process, signum in web:
                process.popen.send_signal(signum)
            time.sleep(1.0)
            waited = all(process.running() for process, _ in web)
    finally:
        database.close()
    for sender in senders:
        sender.join(timeout=20)
    exits = []
    for process, _ in web:
        try:
            code: int | None = process.popen.wait(timeout=30)
        except Exception:  # still running: the part's clean-up kills it
            code = None
        exits.append(code)
    return {
        "in_flight": count,
        "answered_200": sum(1 for a in answers if a == 200),
        "answers": dict(Counter(str(a) for a in answers)),
        "waited_for_them": waited,
        "exit_codes": exits,
        "exit_seconds": round(time.monotonic() - signalled, 2),
    }


# Figures ------------------------------------------------------------------------------------------------


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    loads = [r["load"] for r in runs]
    pooled = loadgen.LoadResult(
        count=sum(r.count for r in loads),
        elapsed=sum(r.elapsed for r in loads),
        latencies=sorted(x for r in loads for x in r.latencies),
        statuses=dict(sum((Counter(r.statuses) for r in loads), Counter())),
        errors=sum(r.errors for r in loads),
        loadgen_cpu_seconds=sum(r.loadgen_cpu_seconds for r in loads),
    )
    probes = [p for r in runs for p in r["held"]["probes"]]
    in_time = sorted(seconds for status, seconds in probes if status == 200 and seconds <= ACK_WITHIN)
    answered = sorted(seconds for status, seconds in probes if status is not None)
    cpu = [r["server_cpu_ms_per_request"] for r in runs if r["server_cpu_ms_per_request"] is not None]
    return {
        "throughput": {
            **pooled.summary(),
            "rounds_requests_per_s": [round(r.rate, 1) for r in loads],
            "server_cpu_ms_per_request": round(statistics.fmean(cpu), 3) if cpu else None,
        },
        "held": {
            "probes": len(probes),
            "acknowledged_in_time": len(in_time),
            "share_in_time": round(len(in_time) / len(probes), 3) if probes else None,
            "answered": len(answered),
            "statuses": dict(Counter(str(status) for status, _ in probes)),
            "p50_ms": round(loadgen.percentile(answered, 50) * 1000, 1) if answered else None,
            "max_ms": round(answered[-1] * 1000, 1) if answered else None,
            "rounds": [{k: v for k, v in r["held"].items() if k != "probes"} for r in runs],
            "by_kind": {kind: sum(r["held_by_kind"][kind] for r in runs) for kind in KINDS},
            "by_kind_probes": KIND_PROBES * len(runs),
        },
        "stop": [r["stop"] for r in runs],
        "framing": runs[-1]["framing"],
    }
