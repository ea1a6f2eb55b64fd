"""Fixtures of the agent's unit tests."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def spool_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="nodetap-spool-") as d:
        yield Path(d) / "spool"
