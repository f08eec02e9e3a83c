"""Running until told to stop, and stopping without losing or stranding work.

SIGINT and SIGTERM both stop gracefully (Huey's own consumer treats SIGTERM as "stop now", but
process managers send SIGTERM for an ordinary stop): stop taking new work, let running tasks finish
within SHUTDOWN_GRACE_SECONDS, then give back whatever is still running so the next worker picks it up
at once instead of waiting for the lease to run out. A kill (SIGKILL, power loss) skips all of this;
then the lease and the reconciler recover the work.
"""

import logging
import signal
import threading
import time
from types import FrameType

from http_server import WebServer
from services import Services

log = logging.getLogger(__name__)

HEALTH_CHECK_SECONDS = 10.0  # how often dead worker threads are replaced
# How often the main thread wakes. A signal the kernel hands to another thread only sets a flag that
# the main thread acts on when it wakes, so this bounds how late a stop is noticed.
WAKE_SECONDS = 0.2


class StopSignals:
    """SIGINT and SIGTERM, both meaning "stop gracefully", caught from the moment this is created
    (so a stop during start-up is graceful too, not a traceback)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.install()

    def install(self) -> None:
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if not self._event.is_set():
            log.info("received %s: stopping", signal.Signals(signum).name)
            self._event.set()

    def received(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        return self._event.wait(seconds)


def run_until_stopped(services: Services, stop: StopSignals, server: WebServer | None = None) -> None:
    """Run a Huey consumer (and `server`, if given, in a thread) until SIGINT or SIGTERM."""
    settings = services.settings
    if stop.received():  # stopped while starting up
        return
    # Pick up at once whatever a stopped process left behind (the periodic run is once a minute).
    services.processor.reconcile()
    consumer = services.queue.consumer(workers=settings.worker_threads, shutdown_timeout=settings.shutdown_grace)
    consumer.start()
    stop.install()  # again: consumer.start() installs Huey's own, which treat SIGTERM as "stop now"
    http = _serve_in_thread(server) if server is not None else None

    next_health_check = time.monotonic() + HEALTH_CHECK_SECONDS
    while not stop.wait(WAKE_SECONDS):
        if time.monotonic() >= next_health_check:
            consumer.check_worker_health()
            next_health_check = time.monotonic() + HEALTH_CHECK_SECONDS

    if server is not None and http is not None:
        server.shutdown()  # no new deliveries: Svix retries them against the next process
        http.join()
    log.info("waiting up to %d s for running tasks", settings.shutdown_grace)
    consumer.stop(graceful=True)
    services.processor.release_active()
    log.info("stopped")


def serve_until_stopped(stop: StopSignals, server: WebServer) -> None:
    """Serve until SIGINT or SIGTERM, then stop gracefully (the web side alone, beside `main.py worker`)."""
    if stop.received():  # stopped while starting up
        return
    http = _serve_in_thread(server)
    while not stop.wait(WAKE_SECONDS):
        pass
    server.shutdown()  # no new deliveries; those already received are answered
    http.join()
    log.info("stopped")


def _serve_in_thread(server: WebServer) -> threading.Thread:
    http = threading.Thread(target=server.serve_forever, name="http", daemon=True)
    http.start()
    log.info("listening on http://%s:%d/webhook", server.host, server.port)
    return http
