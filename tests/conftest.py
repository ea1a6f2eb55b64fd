"""Test-suite wide rules.

Privileged tests (markers ``bpf``, ``root``, ``netns``) must run in CI, which is root on a
machine with BPF: when ``CI`` is set, a skip of such a test is turned into a failure.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Generator

import pytest

PRIVILEGED_MARKERS = ("bpf", "root", "netns")


def _is_privileged(item: pytest.Item) -> bool:
    return any(item.get_closest_marker(m) is not None for m in PRIVILEGED_MARKERS)


def pytest_sessionstart(session: pytest.Session) -> None:
    """Remove the network namespaces a killed earlier run left behind (their creator is gone)."""
    if os.geteuid() == 0:
        from tests.support.lab import Lab

        for name in Lab.clean_orphans():
            print(f"conftest: removed namespace {name} left by an earlier run", file=sys.stderr)


@pytest.fixture(autouse=True)
def _own_tmpdir(monkeypatch: pytest.MonkeyPatch) -> Generator[None, None, None]:
    """Each test's child processes get their own TMPDIR.

    A capture keeps its crash ledger in TMPDIR (agent/backlog_ledger.py): one test that kills
    a capture would otherwise make the next test's capture warn about it. Session and module
    fixtures are set up before this one and keep the shared folder. The name is short, so
    Unix sockets made in it stay under the 108-byte limit.
    """
    folder = tempfile.mkdtemp(prefix="nt-")
    monkeypatch.setenv("TMPDIR", folder)
    yield
    shutil.rmtree(folder, ignore_errors=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    for item in items:
        if _is_privileged(item):
            item.add_marker(pytest.mark.skip(reason="needs root (run the suite as root)"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, None, None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if os.environ.get("CI") and report.skipped and _is_privileged(item):
        report.outcome = "failed"
        report.longrepr = (
            f"privileged test skipped under CI ({report.longrepr}); "
            "CI runs as root with BPF, so this test must run"
        )
