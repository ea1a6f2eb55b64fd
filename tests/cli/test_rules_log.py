"""The active edge rules are news, not a problem (issue 25): logged at INFO (seen with -v),
never as a WARNING on every capture start."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from agent.rules import RuleEngine

REPO = Path(__file__).resolve().parents[2]


def _example(tmp_path: Path) -> Path:
    text = subprocess.run(
        [sys.executable, "-m", "cli", "rules", "example"],
        cwd=REPO, capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    return path


def test_active_rules_are_logged_at_info(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _example(tmp_path)
    with caplog.at_level(logging.DEBUG, logger="agent.rules"):
        RuleEngine.from_file(str(path), key=b"k" * 16)
    active = [r for r in caplog.records if "rules: active from" in r.getMessage()]
    assert [r.levelno for r in active] == [logging.INFO], caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
