"""The results folder: each result as `RESULTS_DIR/<kind>/<request_id>.json`.

Written to a temporary file in the same folder, flushed to disk and renamed over the target, so a
reader never sees half a file and handling a result twice leaves one file with the same content.
Temporary files left by a process killed mid-write are removed when the next process starts.
"""

import contextlib
import json
import os
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from clock import utcnow
from event_types import Event
from results import Result

# A temporary file older than this was left by a process killed mid-write: no writer is still on it.
STALE_TEMPORARY_SECONDS = 600


class ResultsFolder:
    """The handler that writes each result to RESULTS_DIR, atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.remove_stale_temporaries()

    def __repr__(self) -> str:
        return f"ResultsFolder({str(self.root)!r})"

    def remove_stale_temporaries(self, now: datetime | None = None) -> int:
        """Delete the temporary files of writes cut off by a crash; return how many."""
        cutoff = ((now or utcnow()) - timedelta(seconds=STALE_TEMPORARY_SECONDS)).timestamp()
        removed = 0
        for temporary in self.root.glob("*/.*.json.*.tmp"):
            with contextlib.suppress(FileNotFoundError):  # another process may clean up at the same time
                if temporary.stat().st_mtime < cutoff:
                    temporary.unlink()
                    removed += 1
        return removed

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
