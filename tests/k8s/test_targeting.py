"""Targeting: which pods are captured and why, as cgroup v2 ids, with real cgroups."""

from __future__ import annotations

import ctypes
import os
from pathlib import Path

import pytest

from agent.enrich import Enricher, PodIndex, PodInfo
from agent.targeting import (
    NamespaceIndex,
    Selector,
    Targeting,
    TargetingConfig,
    decide,
)
from nodetap.errors import NodetapError
from tests.enrich.podfactory import make_pod
from tests.k8s.cgroups import kubelet_cgroups


def _info(name: str, ns: str = "shop", **kw: object) -> PodInfo:
    return PodInfo.from_model(make_pod(name, ns, uid=f"uid-{name}", **kw))  # type: ignore[arg-type]


def test_decide_order_and_reasons() -> None:
    cfg = TargetingConfig.from_dict(
        {
            "namespaces": ["payments"],
            "selectors": [{"namespace": "shop", "matchLabels": {"app": "cart"}}],
        }
    )
    d = decide(_info("a", annotations={"nodetap.io/capture": "true"}), cfg)
    assert d.targeted and d.reason == "pod annotation nodetap.io/capture=true"
    d = decide(_info("b", labels={"nodetap.io/capture": "true"}), cfg)
    assert d.targeted and "pod label" in d.reason
    # an opt-out wins over the config
    d = decide(_info("c", "payments", annotations={"nodetap.io/capture": "false"}), cfg)
    assert not d.targeted and d.reason == "pod annotation nodetap.io/capture=false"
    d = decide(_info("d", "payments"), cfg)
    assert d.targeted and d.reason == "namespace payments listed in the config"
    d = decide(_info("e", labels={"app": "cart"}), cfg)
    assert d.targeted and d.reason == "config selector #1 (namespace=shop,app=cart)"
    d = decide(_info("f", labels={"app": "web"}), cfg)
    assert not d.targeted and d.reason.startswith("not targeted")
    d = decide(_info("g"), cfg, {"nodetap.io/capture": "true"})
    assert d.targeted and d.reason == "namespace shop has nodetap.io/capture=true"
    own = _info("agent", "nodetap", labels={"app.kubernetes.io/part-of": "nodetap"})
    assert decide(own, TargetingConfig(mode="all")).reason == "nodetap's own pod"
    everything = TargetingConfig.from_dict({"mode": "all"})
    assert decide(_info("h"), everything).targeted
    assert not decide(_info("i", "kube-system"), everything).targeted


def test_config_errors_are_user_errors() -> None:
    with pytest.raises(NodetapError, match="unknown targeting"):
        TargetingConfig.from_dict({"namespace": ["x"]})
    with pytest.raises(NodetapError, match="mode"):
        TargetingConfig.from_dict({"mode": "everything"})
    with pytest.raises(NodetapError, match="selector #1"):
        TargetingConfig.from_dict({"selectors": [{"labels": {}}]})
    assert TargetingConfig.from_dict(None) == TargetingConfig()
    assert Selector().describe() == "everything"


def _pods_for(fake: list[object], targeted_index: int) -> PodIndex:
    idx = PodIndex()
    infos = []
    for i, fp in enumerate(fake):
        annotations = {"nodetap.io/capture": "true"} if i == targeted_index else {}
        infos.append(
            PodInfo.from_model(
                make_pod(
                    f"pod-{i}",
                    "shop",
                    uid=fp.uid,  # type: ignore[attr-defined]
                    annotations=annotations,
                    containers={"app": f"containerd://{fp.container_id}"},  # type: ignore[attr-defined]
                    owner=("StatefulSet", "db"),
                )
            )
        )
    idx.replace(infos)
    return idx


@pytest.mark.root
def test_targeting_real_cgroups_ids_reasons_and_enrichment() -> None:
    with kubelet_cgroups(2) as (root, (a, b)):
        pods = _pods_for([a, b], targeted_index=0)
        changes: list[set[int]] = []
        t = Targeting(pods, cgroup_root=root, on_change=changes.append)
        assert t.refresh() is False  # computed at construction, nothing changed since
        ids = t.cgroup_ids()
        assert ids == {os.stat(a.pod_dir).st_ino, os.stat(a.scope).st_ino}
        assert os.stat(b.scope).st_ino not in ids
        assert changes and changes[-1] == ids
        by_pod = {e["pod"]: e for e in t.status()}
        assert by_pod["pod-0"]["captured"] is True
        assert by_pod["pod-0"]["reason"] == "pod annotation nodetap.io/capture=true"
        assert by_pod["pod-1"]["captured"] is False
        assert by_pod["pod-1"]["reason"].startswith("not targeted")
        assert t.pod_for_cgroup(os.stat(a.scope).st_ino) == a.uid
        t.note(a.uid, "tls", "TLS library not hooked")
        assert t.status()[0]["notes"] == {"tls": "TLS library not hooked"}
        t.forget(a.uid, "tls")  # its process is gone
        assert t.status()[0]["notes"] == {}
        t.refresh()
        assert t.status()[0]["notes"] == {}

        # the process really runs in the cgroup whose id is in the filter
        rel = Path(f"/proc/{a.proc.pid}/cgroup").read_text().split("0::", 1)[1].strip()
        mount = root.parent
        assert os.stat(str(mount) + rel).st_ino in ids

        # enrichment of the real pid: cgroup -> container id -> pod
        enricher = Enricher(pods, node="node-1", cluster="lab")
        info = enricher.enrich(a.proc.pid)
        assert (info.pod, info.namespace, info.container) == ("pod-0", "shop", "app")
        assert info.container_id == a.container_id and info.runtime == "containerd"
        assert info.workload == "StatefulSet/db" and info.cluster == "lab"
        assert info.comm.startswith("python")
        # the opt-in flips: pod-1 annotated, pod-0 gone
        pods.upsert(
            PodInfo.from_model(
                make_pod(
                    "pod-1",
                    "shop",
                    uid=b.uid,
                    annotations={"nodetap.io/capture": "yes"},
                    containers={"app": f"containerd://{b.container_id}"},
                )
            )
        )
        pods.delete(a.uid)
        assert t.cgroup_ids() == {os.stat(b.pod_dir).st_ino, os.stat(b.scope).st_ino}
        assert changes[-1] == t.cgroup_ids()


@pytest.mark.root
def test_targeted_pod_without_cgroup_and_namespace_opt_in() -> None:
    with kubelet_cgroups(1) as (root, (a,)):
        pods = PodIndex()
        pods.replace(
            [
                PodInfo.from_model(
                    make_pod("ghost", "web", uid="0b7e9a2c-1111-2222-3333-444455556666")
                ),
                PodInfo.from_model(make_pod("real", "web", uid=a.uid)),
            ]
        )
        nsi = NamespaceIndex()
        t = Targeting(pods, cgroup_root=root, namespaces=nsi)
        assert t.cgroup_ids() == set()
        from kubernetes import client

        nsi.replace(
            [
                client.V1Namespace(
                    metadata=client.V1ObjectMeta(name="web", labels={"nodetap.io/capture": "true"})
                )
            ]
        )
        by_pod = {e["pod"]: e for e in t.status()}
        assert by_pod["real"]["captured"] and "namespace web has" in by_pod["real"]["reason"]
        assert not by_pod["ghost"]["captured"]
        assert "no cgroup on this node yet" in by_pod["ghost"]["reason"]
        assert os.stat(a.scope).st_ino in t.cgroup_ids()


@pytest.mark.bpf
@pytest.mark.root
def test_kernel_sees_the_same_cgroup_ids() -> None:
    """The ids Targeting computes are what bpf_get_current_cgroup_id() returns: a filter
    loaded with them counts the targeted pod's syscalls and skips the other's."""
    from bcc import BPF

    src = (Path(__file__).parent / "cgroup_probe.c").read_bytes()
    with kubelet_cgroups(2) as (root, (a, b)):
        pods = _pods_for([a, b], targeted_index=0)
        t = Targeting(pods, cgroup_root=root)
        bpf = BPF(text=src)
        try:
            allowed = bpf[b"allowed"]
            for cid in t.cgroup_ids():
                allowed[ctypes.c_uint64(cid)] = ctypes.c_uint8(1)
            a.run(5000)
            b.run(5000)
            counts = {k.value: v.value for k, v in bpf[b"counts"].items()}
            skipped = bpf[b"skipped"][0].value
        finally:
            bpf.cleanup()
        assert counts.get(os.stat(a.scope).st_ino, 0) >= 5000
        assert os.stat(b.scope).st_ino not in counts
        assert set(counts) <= t.cgroup_ids()
        assert skipped >= 5000  # the untargeted pod's calls stopped at the filter


def test_pod_cgroups_under_a_kubelet_cgroup_root_of_another_name(tmp_path: Path) -> None:
    """A kubelet's --cgroup-root (cgroupfs driver) whose name has no "kube" in it, as the
    Kubernetes lab's /nodetap-lab: the scan finds the pods under its kubepods."""
    uid = "29a1a2e7-9379-44cf-b327-12a60c0cdeae"
    scope = tmp_path / "nodetap-lab" / "kubepods" / "besteffort" / f"pod{uid}" / ("ab" * 32)
    scope.mkdir(parents=True)
    (tmp_path / "system.slice" / "other").mkdir(parents=True)
    pods = PodIndex()
    pods.replace(
        [
            PodInfo.from_model(
                make_pod("web", "lab", uid=uid, annotations={"nodetap.io/capture": "true"})
            )
        ]
    )
    t = Targeting(pods, cgroup_root=tmp_path)
    assert t.cgroup_ids() == {os.stat(scope).st_ino, os.stat(scope.parent).st_ino}
    assert t.status()[0]["captured"]
