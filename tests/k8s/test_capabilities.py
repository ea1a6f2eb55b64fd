"""The agent's capability list in daemonset/base is what BCC needs: the cgroup-filter probe
loads, attaches and counts with exactly those capabilities (no CAP_SYS_ADMIN), and does not
load without CAP_BPF or CAP_PERFMON."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from agent.enrich.cgroup import find_cgroup2_mount, read_proc_cgroup
from tests.capture.clients import curl
from tests.k8s.kube import DAEMONSET, kubectls, render
from tests.support.servers import nginx

HERE = Path(__file__).parent


def _bounding() -> set[str]:
    """Capabilities this machine lets a process have (its bounding set)."""
    out = subprocess.run(["capsh", "--print"], capture_output=True, text=True, check=True)
    for line in out.stdout.splitlines():
        if line.startswith("Bounding set ="):
            return {
                c.strip().upper().removeprefix("CAP_")
                for c in line.split("=", 1)[1].split(",")
                if c.strip()
            }
    raise AssertionError("capsh printed no bounding set")


def _agent_caps() -> set[str]:
    objs = render(kubectls()[0][1], DAEMONSET)
    ds = next(o for o in objs if o["kind"] == "DaemonSet")
    return set(
        ds["spec"]["template"]["spec"]["containers"][0]["securityContext"]["capabilities"]["add"]
    )


def _run_with(caps: set[str]) -> str:
    spec = ",".join(["-all"] + [f"+{c.lower()}" for c in sorted(caps)])
    own = read_proc_cgroup(os.getpid())
    mount = find_cgroup2_mount()
    assert own is not None and own.v2 is not None and mount is not None
    # the child runs in the same cgroup as this test: its cgroup id
    cgid = os.stat(str(mount) + own.v2).st_ino
    r = subprocess.run(
        [
            "setpriv",
            "--bounding-set",
            spec,
            "--",
            sys.executable,
            str(HERE / "capprobe.py"),
            str(cgid),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=HERE.parents[1],
        env={**os.environ, "PYTHONPATH": str(HERE.parents[1])},
    )
    return r.stdout.strip() or r.stderr.strip().splitlines()[-1]


@pytest.mark.bpf
@pytest.mark.root
def test_agent_capabilities_suffice_and_are_needed() -> None:
    if not shutil.which("setpriv") or not shutil.which("capsh"):
        pytest.fail("setpriv and capsh (util-linux, libcap2-bin) are needed for this test")
    caps = _agent_caps()
    usable = caps & _bounding()  # e.g. SYS_RESOURCE may be outside a container's bounding set
    assert {"BPF", "PERFMON"} <= usable
    assert "SYS_ADMIN" not in caps
    out = _run_with(usable)
    assert out.startswith("counted "), out
    assert int(out.split()[1]) >= 1000
    for needed in ("BPF", "PERFMON"):
        out = _run_with(usable - {needed})
        assert not out.startswith("counted "), f"loaded without CAP_{needed}: {out}"


def _capture_with(caps: set[str], ngx_port: int, url: str, out: Path) -> tuple[int, str]:
    """The real `nodetap capture` with only caps in its bounding set (root, so they are its
    effective set), against nginx and curl: (exit status, stderr)."""
    spec = ",".join(["-all"] + [f"+{c.lower()}" for c in sorted(caps)])
    proc = subprocess.Popen(
        ["setpriv", "--bounding-set", spec, "--inh-caps", "-all", "--",
         sys.executable, "-m", "cli", "capture", "--port", str(ngx_port), "--count", "2",
         "--duration", "60", "-o", str(out)],
        cwd=HERE.parents[1], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stderr is not None
    head = []
    while line := proc.stderr.readline():  # BCC may print before the capture starts
        head.append(line)
        if line.startswith("nodetap: capturing"):
            curl(url)
            break
    try:
        _, rest = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, "".join(head) + rest


@pytest.mark.bpf
@pytest.mark.root
@pytest.mark.slow
def test_real_capture_runs_with_the_manifest_capabilities_only(tmp_path: Path) -> None:
    """The capture itself (BCC programs, TLS uprobes, /proc reads), not only a probe: with the
    DaemonSet's capabilities it records nginx and curl; without CAP_BPF or CAP_PERFMON it stops
    with one line that names the capability; CAP_NET_ADMIN is not in the list at all."""
    if not shutil.which("setpriv"):
        pytest.fail("setpriv (util-linux) is needed for this test")
    caps = _agent_caps() & _bounding()
    assert "NET_ADMIN" not in _agent_caps() and "SYS_ADMIN" not in _agent_caps()
    with nginx() as ngx:
        out = tmp_path / "ok.jsonl"
        rc, err = _capture_with(caps, ngx.port, ngx.url + "/hello", out)
        assert rc == 0, err
        assert "missing capab" not in err, err
        lines = out.read_text().splitlines()
        assert len(lines) == 2 and all('"/hello"' in line for line in lines), err
        for needed in ("BPF", "PERFMON"):
            rc, err = _capture_with(caps - {needed}, ngx.port, ngx.url, tmp_path / "x.jsonl")
            last = err.strip().splitlines()[-1]
            assert rc == 2 and last.startswith("nodetap: missing capabilities: "), err
            assert f"CAP_{needed} (" in last, last
        # without SYS_PTRACE: a warning that says what goes missing
        rc, err = _capture_with(caps - {"SYS_PTRACE"}, ngx.port, ngx.url, tmp_path / "y.jsonl")
        assert "missing capability CAP_SYS_PTRACE" in err, err
