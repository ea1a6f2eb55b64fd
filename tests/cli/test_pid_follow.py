"""`nodetap capture -p PID` selects the process and its children (issue 25).

nginx's master (what `pgrep -o nginx` gives) only forks the workers that serve: captured
by the master's pid, the workers' exchanges must come out, including those of workers
forked after the capture started (a reload). A pid that does not exist is an error; a
pid that never accepts nor connects gets a warning at exit.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from google.protobuf import json_format

from agent import pid_tree
from nodetap.v1 import rrpair_pb2 as pb
from tests.capture.clients import curl
from tests.capture.test_cli_exchanges import cli_capture
from tests.support.servers import nginx

REPO = Path(__file__).resolve().parents[2]


def _workers(master: int, old: set[int], timeout: float = 20.0) -> set[int]:
    """The master's children once they are all new (not in `old`) and at least one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = pid_tree.children(master)
        if kids and not kids & old:
            return kids
        time.sleep(0.05)
    raise AssertionError(f"nginx {master}: no new workers after {timeout}s")


@pytest.mark.bpf
@pytest.mark.root
def test_capture_by_master_pid_follows_workers(tmp_path: Path) -> None:
    out = tmp_path / "pairs.jsonl"
    with nginx(workers=2) as ngx:
        master = ngx.proc.pid
        first = _workers(master, set())
        assert master not in first
        args = ["-p", str(master), "--count", "2", "--duration", "60", "-w", str(out)]
        with cli_capture(*args) as proc:
            curl(ngx.url + "/hello?before-reload=1")
            ngx.proc.send_signal(signal.SIGHUP)  # reload: the master forks new workers
            _workers(master, first)
            curl(ngx.url + "/hello?after-reload=1")
            _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
    pairs = [json_format.Parse(line, pb.RRPair()) for line in out.read_text().splitlines()]
    paths = sorted(p.http.req.url for p in pairs)
    assert paths == ["/hello?after-reload=1", "/hello?before-reload=1"], paths
    assert all(p.direction == pb.INBOUND for p in pairs)
    assert "warning" not in err.decode()


def test_capture_pid_that_does_not_exist_is_an_error() -> None:
    r = subprocess.run(
        [sys.executable, "-m", "cli", "capture", "-p", "999999999", "--duration", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [
        "nodetap: -p 999999999: no such process; give the pid of a running process "
        "(e.g. pgrep -o nginx)"
    ]


@pytest.mark.bpf
@pytest.mark.root
def test_capture_pid_without_connections_warns_at_exit() -> None:
    idle = subprocess.Popen(["sleep", "120"])
    try:
        r = subprocess.run(
            [sys.executable, "-m", "cli", "capture", "-p", str(idle.pid), "--duration", "1"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        idle.kill()
        idle.wait()
    assert r.returncode == 0, r.stderr
    assert f"warning: -p {idle.pid}: no connection accepted nor opened" in r.stderr
