"""The DaemonSet installed for real on the lab's node (daemonset/overlays/k8s-lab, which is
overlays/lab on the host network): the secrets Job runs, and the agent's pod (BCC compiling
its programs in the container) becomes Ready on the lab's node."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.k8s_lab.lab import REPO, K8sLab

pytestmark = [pytest.mark.root, pytest.mark.bpf, pytest.mark.slow]

OVERLAY = REPO / "daemonset" / "overlays" / "k8s-lab"
DEMO = "demo"  # the namespace overlays/lab targets
AGENT = "app.kubernetes.io/component=agent"
PINS = Path("/sys/fs/bpf/nodetap")


def _wait(cond: Callable[[], Any], what: str, timeout: float, on_fail: Callable[[], str]) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}: {on_fail()}")
        time.sleep(1)


def _agent_pod(lab: K8sLab) -> dict[str, Any]:
    pods = json.loads(lab.kubectl("-n", "nodetap", "get", "pods", "-l", AGENT, "-o", "json"))
    items = [p for p in pods["items"] if not p["metadata"].get("deletionTimestamp")]
    return items[0] if items else {}


def _ready(pod: dict[str, Any]) -> bool:
    conds = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conds)


def _describe(lab: K8sLab, ns: str, what: str) -> Callable[[], str]:
    return lambda: lab.kubectl("-n", ns, "describe", *what.split(), check=False)[-3000:]


def _agent_pid(lab: K8sLab, pod_uid: str) -> int:
    """The host PID of the agent's process: the one whose cgroup names the pod's UID."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cg = (d / "cgroup").read_text()
            argv = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"pod{pod_uid}" in cg and any(a.endswith(b"/nodetap") for a in argv[:2]):
            return int(d.name)
    return 0


def _bpf_progs_of(pid: int) -> list[int]:
    out = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True)
    return [
        p["id"]
        for p in json.loads(out.stdout or "[]")
        if any(o.get("pid") == pid for o in p.get("pids", []))
    ]


@pytest.fixture(scope="module")
def installed(k8s_lab: K8sLab) -> Iterator[K8sLab]:
    k8s_lab.kubectl("apply", "-k", str(OVERLAY), timeout=120)
    try:
        yield k8s_lab
    finally:
        # waits until the namespace is gone, or the next module's apply would meet it terminating
        k8s_lab.kubectl(
            "delete", "-k", str(OVERLAY), "--ignore-not-found", check=False, timeout=180
        )


def test_agent_pod_becomes_ready_on_the_lab_node(installed: K8sLab) -> None:
    pod = _wait(
        lambda: (p := _agent_pod(installed)) and _ready(p) and p,
        "the agent's pod to be Ready", 300,
        _describe(installed, "nodetap", f"pods -l {AGENT}"),
    )  # fmt: skip
    assert pod["spec"]["nodeName"] == "127.0.0.1"
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "DaemonSet"
