"""The results folder: each result as `RESULTS_DIR/<kind>/<request_id>.json`.

Written to a temporary file in the same folder, flushed to disk and renamed over the target, so a
reader never sees half a file and handling a result twice leaves one file with the same content.
"""

import json
import os
import tempfile
from pathlib import Path

from handlers.registry import Event
from results import Result


class ResultsFolder:
    def __init__(self, root: Path) -> None:
        self.root = root

    def __repr__(self) -> str:
        return f"ResultsFolder({str(self.root)!r})"

    def path_for(self, event: Event) -> Path:
        # Intake only accepts request ids of [A-Za-z0-9_-], so the id is a safe file name.
        return self.root / str(event.kind) / f"{event.request_id}.json"

    def __call__(self, event: Event, result: Result) -> None:
        target = self.path_for(event)
        target.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps(result.raw, indent=2, ensure_ascii=False).encode() + b"\n"
        fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        _fsync_directory(target.parent)


def _fsync_directory(path: Path) -> None:
    """Make the rename itself durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
