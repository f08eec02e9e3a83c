"""A stand-in for the OptiPick API, served on loopback: for the tests, and for trying the service
without an OptiPick account.

It answers `GET /optimize/{route|cluster}/{request_id}` like the real API: 403 without the right
X-API-KEY (or without any key, when started without one), the stored result with 200, 404 for an id
it does not know. Results are built from the example documents in fixtures/. It counts every fetch,
can answer slowly, and can be told to fail a given number of times first (any status, headers and
body), to exercise the worker's retries. `python optipick_standin.py` runs it on its own.
"""

import argparse
import copy
import json
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

FIXTURES = Path(__file__).resolve().parent / "fixtures"
KINDS = ("route", "cluster")


def example_result(kind: str, request_id: str) -> dict[str, Any]:
    """The example result of `kind` from fixtures/, as the result of `request_id`."""
    document: dict[str, Any] = json.loads((FIXTURES / f"{kind}-result.json").read_text())
    document["request_id"] = request_id
    return document


class StandInApi:
    def __init__(self, api_key: str | None, *, delay: float = 0.0) -> None:
        self.api_key = api_key  # None: any key is accepted
        self.delay = delay  # seconds before every answer
        self.fetches: Counter[tuple[str, str]] = Counter()  # (kind, request_id) -> GETs received
        self.url = ""  # set by serve()
        self._results: dict[tuple[str, str], dict[str, Any]] = {}
        self._scripted: dict[tuple[str, str], deque[tuple[int, dict[str, str], Any]]] = {}
        self._lock = threading.Lock()

    def add_result(self, kind: str, request_id: str, document: dict[str, Any] | None = None) -> dict[str, Any]:
        """Serve `document` (the fixture by default) as the `kind` result of `request_id`."""
        document = copy.deepcopy(document) if document is not None else example_result(kind, request_id)
        with self._lock:
            self._results[(kind, request_id)] = document
        return document

    def fail_first(self, kind: str, request_id: str, *answers: tuple[int, dict[str, str], Any]) -> None:
        """Answer the next GETs of this result with these (status, headers, body) first."""
        with self._lock:
            self._scripted.setdefault((kind, request_id), deque()).extend(answers)

    def total_fetches(self) -> int:
        with self._lock:
            return sum(self.fetches.values())

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return self.answer(Request(environ))(environ, start_response)

    def answer(self, request: Request) -> Response:
        parts = request.path.strip("/").split("/")
        if request.method != "GET" or len(parts) != 3 or parts[0] != "optimize" or parts[1] not in KINDS:
            return _json(404, {"detail": "Not Found"})
        given = request.headers.get("X-API-KEY")
        if not given or (self.api_key is not None and given != self.api_key):
            return _json(403, {"message": "Forbidden"})
        key = (parts[1], parts[2])
        with self._lock:
            self.fetches[key] += 1
            scripted = self._scripted.get(key)
            answer = scripted.popleft() if scripted else None
            document = self._results.get(key)
        if self.delay:
            time.sleep(self.delay)
        if answer is not None:
            status, headers, body = answer
            return _json(status, body, headers)
        if document is None:
            return _json(404, {"detail": "Request not found"})
        return _json(200, document)

    @contextmanager
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> Iterator["StandInApi"]:
        """Serve on a free loopback port (or `port`) for the duration of the block; `url` is set."""
        server = make_server(host, port, self, threaded=True)
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="standin-api", daemon=True
        )
        thread.start()
        self.url = f"http://{host}:{server.port}"
        try:
            yield self
        finally:
            server.shutdown()
            server.server_close()
            thread.join()


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    text = body if isinstance(body, str | bytes) else json.dumps(body)
    return Response(text, status=status, headers=headers or {}, content_type="application/json")


def main() -> None:
    """Run the stand-in on its own, serving the two example results, until Ctrl+C."""
    parser = argparse.ArgumentParser(description="A local stand-in for the OptiPick API.")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--api-key", default=None, help="Accept only this X-API-KEY (default: any).")
    args = parser.parse_args()
    standin = StandInApi(args.api_key)
    for kind in KINDS:
        request_id = json.loads((FIXTURES / f"{kind}-result.json").read_text())["request_id"]
        standin.add_result(kind, request_id)
        print(f"serving the example {kind} result as request id {request_id}")
    with standin.serve(port=args.port):
        print(f"stand-in OptiPick API on {standin.url} (Ctrl+C to stop)")
        with suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
