"""Mocks for a Python service that shares the replay's network namespace: its connections are
told apart by its cgroup (`socket cgroupv2`). It calls its dependency (nginx) over a kept-alive
connection and over new connections, and makes a call no recording holds (counted unmatched)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netsetup.redirect import cgroup2_mount
from nodetap import jsonl
from tests.responder.test_mocks_replay import _nginx
from tests.support.capture import live_capture
from tests.support.lab import Lab
from tests.support.servers import free_port

ROOT = Path(__file__).resolve().parents[2]
FILES = {"a.txt": b"alpha\n", "b.txt": b"bravo\n", "c.json": b'{"c": 3}\n'}
PATHS = ["/ka/a.txt", "/ka/b.txt", "/ka/a.txt", "/new/c.json", "/new/a.txt", "/new/b.txt"]


@pytest.fixture
def own_cgroup() -> Iterator[Path]:
    path = Path(cgroup2_mount()) / f"nodetap-test-{os.getpid()}"
    path.mkdir()
    try:
        yield path
    finally:
        for pid in (path / "cgroup.procs").read_text().split():
            (path.parent / "cgroup.procs").write_text(pid)
        path.rmdir()


@pytest.mark.netns
@pytest.mark.bpf
def test_python_service_mocked_by_cgroup(own_cgroup: Path, tmp_path: Path) -> None:
    with Lab() as lab:
        ns = lab.netns("sut")
        dep_port, sut_port = free_port(), free_port()
        dep = _nginx(lab, ns, dep_port, "", FILES)
        sut = lab.popen(
            ns, [sys.executable, "-m", "tests.responder.sut_service", str(sut_port), str(dep_port)],
            cwd=ROOT,
        )  # fmt: skip
        (own_cgroup / "cgroup.procs").write_text(str(sut.pid))
        for _ in range(100):
            probe = ["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{sut_port}/new/a.txt"]
            if lab.run(ns, probe, check=False).returncode == 0:
                break
            time.sleep(0.05)
        with live_capture(ports=[sut_port, dep_port], pids=[sut.pid]) as lc:
            urls = [f"http://127.0.0.1:{sut_port}{p}" for p in PATHS]
            lab.run(ns, ["curl", "-sS", *(["-o", "/dev/null"] * len(urls)), *urls])
            lc.wait_for(len(PATHS), where=lambda p: p.server.port == sut_port)
            lc.wait_for(2 * len(PATHS), where=lambda p: p.server.port == dep_port)
            lc.settle()
        cap = tmp_path / "sut.jsonl"
        with cap.open("w") as f:
            for p in lc.pairs:
                jsonl.write(f, p)
        dep.send_signal(signal.SIGQUIT)
        dep.wait(timeout=10)
        rep = tmp_path / "r.json"
        argv = [sys.executable, "-m", "cli", "replay", str(cap), "--target",
                f"http://127.0.0.1:{sut_port}", "--no-progress", "--vusers", "1",
                "--mocks", "--sut-pid", str(sut.pid), "--report", str(rep),
                "--fail-on", "errors,mismatches,unmatched-mocks"]  # fmt: skip
        # the replay in the service's namespace (nsenter: `ip netns exec` would hide the
        # cgroup mounts): the rules must match its cgroup
        enter = ["nsenter", f"--net=/run/netns/{ns.name}"]
        r = subprocess.run([*enter, *argv], capture_output=True, text=True, timeout=120)
        st = [sys.executable, "-m", "cli", "netsetup", "--netns", ns.name, "--json", "status"]
        status = subprocess.run(st, capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert status.returncode == 0, status.stderr
    assert r.returncode == 3, r.stdout + r.stderr  # unmatched-mocks holds: the audit calls
    assert f"from cgroup {own_cgroup.name} go to the responder" in r.stderr
    report = json.loads(rep.read_text())
    assert report["requests"]["sent"] == len(PATHS)
    assert report["comparison"]["mismatched"] == 0 and report["errors"]["total"] == 0
    assert report["verdict"]["failed"] == [f"unmatched-mocks>0: {len(PATHS)}"]
    assert report["mocks"]["by_dependency"] == {
        f"127.0.0.1:{dep_port}": {"recorded": 12, "served": 6, "unmatched": 6}
    }
    assert all("/audit?seq=" in s for s in report["mocks"]["unmatched_samples"])
    assert json.loads(status.stdout)["rules"] == []
