"""The results folder (handlers/results_folder.py): each result written whole as RESULTS_DIR/<kind>/<request_id>.json,
replaced whole, and no temporary file left behind, not even by a crash."""

import json
import os
import time
from pathlib import Path

import pytest
from support.events import make_event
from support.standin import CLUSTER_ID, ROUTE_ID

from event_types import Kind
from handlers.results_folder import STALE_TEMPORARY_SECONDS, ResultsFolder
from optipick_standin import example_result
from results import parse_cluster, parse_route


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize(("kind", "request_id"), [(Kind.ROUTE, ROUTE_ID), (Kind.CLUSTER, CLUSTER_ID)])
def test_results_folder_writes_one_file_per_result(tmp_path, kind, request_id):
    """A result is written as RESULTS_DIR/<kind>/<request_id>.json; twice leaves one file, same bytes, no temporary."""
    document = example_result(kind, request_id)
    result = (parse_route if kind is Kind.ROUTE else parse_cluster)(document)
    folder = ResultsFolder(tmp_path / "results")
    event = make_event(kind, request_id=request_id)

    folder(event, result)
    target = tmp_path / "results" / str(kind) / f"{request_id}.json"
    first = target.read_bytes()
    folder(event, result)

    assert _files(tmp_path / "results") == [f"{kind}/{request_id}.json"]
    assert target.read_bytes() == first
    assert json.loads(first) == document
    assert folder.path_for(event) == target


def test_results_folder_replaces_the_whole_file(tmp_path):
    """A newer result for the same request replaces the file entirely, leaving no trace of the old content."""
    folder = ResultsFolder(tmp_path)
    event = make_event()
    folder(event, parse_route(example_result("route", ROUTE_ID)))
    folder(event, parse_route({"request_id": ROUTE_ID, "error": "later failure"}))
    assert json.loads((tmp_path / "route" / f"{ROUTE_ID}.json").read_text()) == {
        "request_id": ROUTE_ID,
        "error": "later failure",
    }
    assert _files(tmp_path) == [f"route/{ROUTE_ID}.json"]


def test_results_folder_failed_write_leaves_no_temporary_file(tmp_path):
    """When the final rename fails, the error propagates and no temporary file is left behind."""
    folder = ResultsFolder(tmp_path)
    (tmp_path / "route" / f"{ROUTE_ID}.json").mkdir(parents=True)  # the target cannot be replaced by a file
    with pytest.raises(OSError):  # noqa: PT011 -- which OSError depends on the platform
        folder(make_event(), parse_route(example_result("route", ROUTE_ID)))
    assert _files(tmp_path) == []


def test_results_folder_removes_temporary_files_left_by_a_crash(tmp_path):
    """Temporary files of an interrupted write are removed at start-up once stale; fresh ones are left alone."""
    kind = tmp_path / "route"
    kind.mkdir()
    stale = kind / f".{ROUTE_ID}.json.abc123.tmp"
    fresh = kind / f".{CLUSTER_ID}.json.def456.tmp"
    result = kind / f"{ROUTE_ID}.json"
    for path in (stale, fresh, result):
        path.write_text("{}")
    old = time.time() - STALE_TEMPORARY_SECONDS - 5
    os.utime(stale, (old, old))
    os.utime(result, (old, old))

    ResultsFolder(tmp_path)

    assert not stale.exists()
    assert fresh.exists()
    assert result.exists()
