"""Enricher without a cluster, and its per-process cache, against real and laid-out /proc."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

from agent.enrich import Enricher, PodIndex, PodInfo
from tests.enrich.podfactory import make_pod

CID = "d" * 64
UID = "12345678-aaaa-bbbb-cccc-1234567890ab"


def test_host_only_never_fails() -> None:
    e = Enricher()
    me = e.enrich(os.getpid())
    assert me.pid == os.getpid() and me.node == socket.gethostname()
    assert me.comm and me.pod == "" and me.namespace == "" and me.labels == {}
    assert e.ready() and not e.in_cluster and e.peer("10.0.0.1") is None
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        assert e.enrich(sleeper.pid).comm == "sleep"
    finally:
        sleeper.kill()
        sleeper.wait()
    assert e.enrich(sleeper.pid).comm == "sleep"  # cached: not re-checked within 2 s
    fresh = Enricher(revalidate_seconds=0)
    gone = fresh.enrich(sleeper.pid)  # exited: what is known, no exception
    assert gone.pid == sleeper.pid and gone.comm == ""
    e.forget(sleeper.pid)
    assert e.enrich(sleeper.pid).comm == ""


def _fake_proc(root: Path, pid: int, start: int, cgroup: str, comm: str) -> None:
    d = root / str(pid)
    d.mkdir(parents=True, exist_ok=True)
    (d / "stat").write_text(
        f"{pid} ({comm}) S 1 {pid} {pid} 0 -1 4194560 " + "0 " * 12 + f"{start} 0 0\n"
    )
    (d / "comm").write_text(comm + "\n")
    (d / "cgroup").write_text(cgroup)


def test_container_pid_cache_and_pid_reuse(tmp_path: Path) -> None:
    pods = PodIndex()
    e = Enricher(
        pods,
        node="node-1",
        cluster="prod",
        proc_root=str(tmp_path),
        max_entries=2,
        revalidate_seconds=0,
    )
    scope = (
        f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
        f"{UID.replace('-', '_')}.slice/cri-containerd-{CID}.scope\n"
    )
    _fake_proc(tmp_path, 4242, 1000, scope, "nginx")
    # the pod event has not arrived yet: container id and pod uid from the cgroup alone
    early = e.enrich(4242)
    assert (early.container_id, early.runtime, early.pod_uid, early.pod) == (
        CID,
        "containerd",
        UID,
        "",
    )
    pods.upsert(
        PodInfo.from_model(
            make_pod(
                "web-0",
                "shop",
                uid=UID,
                labels={"app": "web"},
                containers={"nginx": f"containerd://{CID}"},
                owner=("StatefulSet", "web"),
            )
        )
    )
    info = e.enrich(4242)  # cached cgroup facts, live pod facts
    assert (info.pod, info.namespace, info.container, info.workload) == (
        "web-0",
        "shop",
        "nginx",
        "StatefulSet/web",
    )
    assert info.labels == {"app": "web"} and info.cluster == "prod" and info.node == "node-1"
    # the pid is reused by a host process: the start time differs, the cache is not trusted
    _fake_proc(tmp_path, 4242, 2000, "0::/system.slice/cron.service\n", "cron")
    reused = e.enrich(4242)
    assert (reused.comm, reused.pod, reused.container_id) == ("cron", "", "")
    # bounded
    _fake_proc(tmp_path, 1, 5, "0::/init.scope\n", "init")
    _fake_proc(tmp_path, 2, 5, "0::/\n", "kthreadd")
    e.enrich(1)
    e.enrich(2)
    assert e.cache_size() == 2
    e.forget(2)
    assert e.cache_size() == 1
