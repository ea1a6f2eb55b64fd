"""A capture killed with its TLS uprobes attached leaves them in tracefs (BCC cannot remove
them); the next capture with TLS removes them, and only them (agent/tls/stale_probes.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from agent.loader import find_tracefs
from agent.tls import stale_probes
from tests.support.servers import free_port
from tests.tls.tls_env import TlsNginx

REPO = Path(__file__).resolve().parents[2]

OURS_DEAD = "r:uprobes/r__proc_self_fd_72_0x35430_bcc_999999999 /proc/self/fd/72:0x0000000000035430"
OURS_ALIVE = f"p:uprobes/p__proc_self_fd_9_0x10_bcc_{os.getpid()} /proc/self/fd/9:0x10"
OTHER_TOOL = "p:uprobes/p_usr_lib_libssl.so.3_0x35430_bcc_999999999 /usr/lib/libssl.so.3:0x35430"


def test_only_our_probes_of_processes_that_are_gone_are_stale() -> None:
    events = "\n".join([OURS_DEAD, OURS_ALIVE, OTHER_TOOL, ""])
    assert stale_probes.stale(events, running={os.getpid()}) == [
        "uprobes/r__proc_self_fd_72_0x35430_bcc_999999999"
    ]
    assert stale_probes.stale(events, running={os.getpid(), 999999999}) == []
    assert stale_probes.stale("") == []


def _capture(tmp_path: Path, site: TlsNginx, name: str) -> tuple[subprocess.Popen[bytes], str]:
    addr = f"127.0.0.1:{free_port()}"
    cmd = [sys.executable, "-m", "cli", "capture", "--port", str(site.tls_port),
           "--duration", "60", "--metrics-addr", addr, "-o", str(tmp_path / name)]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    line = proc.stderr.readline().decode()
    assert line.startswith("nodetap: capturing"), line + proc.stderr.read().decode()
    return proc, addr


def _hooked(addr: str, pids: set[int], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{addr}/status", timeout=5) as r:
                rows = [t for t in json.loads(r.read()).get("tls", []) if t["pid"] in pids]
            if {t["pid"] for t in rows} == pids and all(t["state"] == "hooked" for t in rows):
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"nginx's processes {sorted(pids)} not hooked in {timeout} s")


def _dead_pid() -> int:
    """The pid of a process that ran and is gone."""
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


@pytest.mark.bpf
@pytest.mark.root
def test_a_capture_with_tls_removes_what_a_killed_capture_left(
    tmp_path: Path, site: TlsNginx
) -> None:
    """The leftovers are made as BCC makes them through tracefs (in a pod, where its
    perf_event_open path is refused and it falls back to uprobe_events; the lab's
    test_daemonset_tls.py kills the agent's process for real): nodetap's of a process that
    is gone, nodetap's of one that runs (this test), another tool's of a process that is
    gone. The capture removes the first only, then hooks nginx as always."""
    tracefs = find_tracefs()
    events = tracefs / "uprobe_events"
    libssl = next(
        line.split()[-1]
        for line in Path(f"/proc/{min(site.pids())}/maps").read_text().splitlines()
        if "libssl.so" in line
    )
    fd = os.open(libssl, os.O_RDONLY)
    dead = _dead_pid()
    made = {
        "gone": f"r:uprobes/r__proc_self_fd_{fd}_0x35430_bcc_{dead} /proc/self/fd/{fd}:0x35430",
        "alive": f"p:uprobes/p__proc_self_fd_{fd}_0x35430_bcc_{os.getpid()} "
        f"/proc/self/fd/{fd}:0x35430",
        "other": f"p:uprobes/p_nt_test_libssl_0x35430_bcc_{dead} {libssl}:0x35430",
    }
    names = {k: v.split()[0][2:] for k, v in made.items()}
    proc = None
    try:
        for line in made.values():
            assert stale_probes.write_event(events, line), line
        text = events.read_text()
        assert all(f"{n} " in text for n in names.values()), text
        proc, addr = _capture(tmp_path, site, "out.jsonl")
        _hooked(addr, site.pids())
        text = events.read_text()
        assert f"{names['gone']} " not in text
        assert f"{names['alive']} " in text and f"{names['other']} " in text
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        for name in names.values():
            stale_probes.write_event(events, f"-:{name}")
        os.close(fd)
