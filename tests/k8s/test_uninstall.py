"""Uninstall leaves nothing: an agent killed with SIGKILL while attached, then
`nodetap netsetup clean`: none of its BPF programs, pins, tc filters or rules remain."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.servers import nginx

REPO = Path(__file__).resolve().parents[2]


def _prog_ids() -> set[int]:
    out = subprocess.run(
        ["bpftool", "prog", "show", "-j"], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    return {p["id"] for p in json.loads(out or "[]")}


def _nodetap(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.bpf
@pytest.mark.root
@pytest.mark.slow
def test_sigkilled_agent_then_clean_leaves_nothing(tmp_path: Path) -> None:
    if not shutil.which("bpftool"):
        pytest.fail("bpftool is needed to list BPF programs (apt-get install bpftool)")
    with nginx() as web:
        before = _prog_ids()
        cap = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cli",
                "capture",
                "--port",
                str(web.port),
                "--duration",
                "120",
                "-o",
                str(tmp_path / "pairs.jsonl"),
            ],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert cap.stderr is not None
            line = cap.stderr.readline()  # "nodetap: capturing N syscalls ..."
            assert "capturing" in line, line + cap.stderr.read()
            ours = _prog_ids() - before
            assert ours, "the capture loaded no BPF program that bpftool can see"
        finally:
            cap.send_signal(signal.SIGKILL)
            cap.wait(timeout=30)
    r = _nodetap("netsetup", "clean")
    assert r.returncode == 0, r.stderr
    deadline = time.monotonic() + 10  # the kernel frees programs after the last reference
    while _prog_ids() & ours and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not (_prog_ids() & ours), "BPF programs of the killed agent are still loaded"
    status = json.loads(_nodetap("netsetup", "--json", "status").stdout)
    assert status == {"rules": [], "tc_filters": [], "pins": []}
    pins = Path("/sys/fs/bpf/nodetap")
    assert not pins.exists() or not any(pins.iterdir())
    nft = subprocess.run(["nft", "list", "table", "inet", "nodetap"], capture_output=True)
    assert nft.returncode != 0  # no table of nodetap's left
