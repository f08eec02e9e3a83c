"""`python main.py demo` (demo.py): the whole flow with no configuration, leaving nothing behind."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from support.processes import PROJECT_DIR, process_env

import defaults

DEMO_OUTCOMES = [
    (200, "done"),
    (200, "done"),
    (200, "done"),
    (200, "duplicate"),
    (200, "done"),
    (200, "ignored"),
    (401, "not stored"),
]


OUTCOME_LINE = re.compile(r"^(\d)\. HTTP (\d{3}), (done|duplicate|ignored|not stored|\S+)\b.*\[ok\]$")


def files_under(folder: Path) -> list[str] | None:
    """Every path under `folder`, or None when it does not exist."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else None


@pytest.mark.slow
@pytest.mark.parametrize(
    "configuration",
    [{}, {"WEBHOOK_SECRET": "not-a-secret", "OPTIPICK_API_URL": "ftp://nowhere", "DATABASE_URL": "nonsense"}],
    ids=["no-configuration", "broken-configuration"],
)
def test_demo_runs_the_whole_flow_without_configuration(tmp_path, configuration):
    """`python main.py demo` needs no settings, shows all 7 deliveries ending as expected, and leaves no file behind."""
    instance_before = files_under(defaults.INSTANCE_DIR)
    results_before = files_under(PROJECT_DIR / "results")
    scratch = tmp_path / "tmp"
    scratch.mkdir()

    completed = subprocess.run(
        [sys.executable, "main.py", "demo"],
        cwd=PROJECT_DIR,
        env=process_env(configuration, TMPDIR=str(scratch)),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 0, completed.stdout + completed.stderr
    out = completed.stdout
    assert "demo finished: every delivery ended as it should" in out
    sent, _, outcome = out.partition("\nwhat the receiver did:\n")
    assert [line.split(".")[0] for line in sent.splitlines() if re.match(r"^\d\. ", line)] == [
        str(n) for n in range(1, 8)
    ]
    outcomes = [OUTCOME_LINE.match(line) for line in outcome.splitlines() if re.match(r"^\d\. ", line)]
    assert all(outcomes), outcome
    assert [(int(m.group(2)), m.group(3)) for m in outcomes] == DEMO_OUTCOMES
    assert [int(m.group(1)) for m in outcomes] == list(range(1, 8))
    assert "inbox rows: 5 for 7 deliveries" in out

    assert files_under(scratch) == []  # its temporary folder is gone
    assert files_under(defaults.INSTANCE_DIR) == instance_before
    assert files_under(PROJECT_DIR / "results") == results_before
