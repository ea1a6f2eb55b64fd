"""The README's main job: `nodetap demo` runs end to end and reports success."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.bpf
@pytest.mark.root
@pytest.mark.slow
def test_demo_end_to_end_twice_in_one_workdir(tmp_path: Path) -> None:
    """The second run in the same --workdir starts from a fresh store (issue 25: it failed)."""
    for _ in range(2):
        r = subprocess.run(
            [sys.executable, "-m", "cli", "demo", "--workdir", str(tmp_path)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert r.returncode == 0, r.stdout + r.stderr
    assert "demo: OK" in r.stdout
    assert "(100.0%)" in r.stdout
    captured = (tmp_path / "capture.jsonl").read_text().splitlines()
    stored = (tmp_path / "stored.jsonl").read_text().splitlines()
    assert len(captured) == len(stored) > 200
    report = json.loads((tmp_path / "replay-report.json").read_text())
    assert report  # the replay wrote its report
    assert "mismatches   0 of" in r.stdout
