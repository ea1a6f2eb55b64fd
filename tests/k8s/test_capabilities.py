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
from tests.k8s.kube import DAEMONSET, kubectls, render

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
