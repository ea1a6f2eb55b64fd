"""--sut-pid: the service's CPU time and memory during the replay, from its own cgroup (a Python
echo service moved into cgroups the test makes and removes)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from replay.sut_usage import _mounts
from tests.replay.helpers import record
from tests.support.servers import python_server_process

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def own_cgroups(pid: int) -> Iterator[str]:
    """pid moved into a new cgroup in each hierarchy that accounts CPU or memory."""
    mounts = _mounts()
    name = f"nodetap-sut-{os.getpid()}"
    made = []
    try:
        for ctrl in ("cpuacct", "memory") if "cpuacct" in mounts else ("",):
            d = Path(mounts[ctrl]) / name
            d.mkdir()
            made.append(d)
            (d / "cgroup.procs").write_text(str(pid))
        yield "/" + name
    finally:
        for d in made:
            with contextlib.suppress(OSError):
                for p in (d / "cgroup.procs").read_text().split():
                    (d.parent / "cgroup.procs").write_text(p)
            d.rmdir()


def test_sut_cpu_and_memory_in_report(tmp_path: Path) -> None:
    with python_server_process() as py, own_cgroups(py.pid) as cg:
        cap = tmp_path / "cap.jsonl"
        record("127.0.0.1", py.port, [("POST", "/echo", [], b"x" * 200_000)] * 50, cap)
        rep = tmp_path / "r.json"
        r = subprocess.run(
            [sys.executable, "-m", "cli", "replay", str(cap), "--target", py.url, "--no-progress",
             "--sut-pid", str(py.pid), "--report", str(rep), "--loop", "4"],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert r.returncode == 0, r.stderr
    sut = json.loads(rep.read_text())["sut"]
    assert sut["cgroup"] == cg and sut["other_processes_in_cgroup"] == 0
    assert sut["cpu_s"] > 0 and sut["memory_bytes_max"] > 0
    assert sut["timeline"] and sut["timeline"][-1]["cpu_s"] == sut["cpu_s"]
    assert f"pid {py.pid} cgroup {cg}: " in r.stdout
