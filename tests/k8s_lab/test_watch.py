"""The agent's pod watch (agent/enrich) against a real API server, as the agent's own service
account: it lists this node's pods, sees a relabel without restart, and keeps watching after
the API server restarts (it relists)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.enrich.enricher import Enricher
from agent.enrich.pods import PodInfo
from tests.k8s_lab.lab import REPO, K8sLab

pytestmark = [pytest.mark.root, pytest.mark.slow]

NODE = "lab-node-1"
NS = "nodetap-lab-demo"


def _wait(cond: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _pod(name: str, labels: dict[str, str], node: str = NODE) -> str:
    # a pod bound to a node that has no kubelet: it stays Pending, but it is a real API object
    # that the agent's field-selected watch sees, as it would on a real node
    return json.dumps({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "nodetap:dev"}]},
    })  # fmt: skip


@pytest.fixture
def agent_kubeconfig(k8s_lab: K8sLab, tmp_path: Path) -> Path:
    """The agent's namespace and RBAC applied; a kubeconfig with its service account's token."""
    k8s_lab.kubectl("apply", "-f", str(REPO / "daemonset" / "base" / "namespace.yaml"))
    k8s_lab.kubectl("-n", "nodetap", "apply", "-f", str(REPO / "daemonset" / "base" / "rbac.yaml"))
    return k8s_lab.sa_kubeconfig("nodetap-agent", "nodetap", tmp_path / "agent.kubeconfig")


@pytest.fixture
def agent_view(k8s_lab: K8sLab, agent_kubeconfig: Path) -> Iterator[tuple[K8sLab, Enricher]]:
    k8s_lab.kubectl("create", "namespace", NS)
    enricher = Enricher.from_environment(
        node=NODE, kubeconfig=str(agent_kubeconfig), resync_seconds=3600, peers=False
    )
    try:
        yield k8s_lab, enricher
    finally:
        enricher.close()
        k8s_lab.kubectl("delete", "namespace", NS, "--wait=false", check=False)


def _labels(enricher: Enricher, name: str) -> dict[str, str] | None:
    assert enricher.pods is not None
    found: list[PodInfo] = [p for p in enricher.pods.pods() if p.name == name]
    return dict(found[0].labels) if found else None


def test_watch_sees_relabels_and_survives_an_api_server_restart(
    agent_view: tuple[K8sLab, Enricher],
) -> None:
    lab, enricher = agent_view
    _wait(enricher.ready, "the first pod list")
    for name, node in (("web", NODE), ("elsewhere", "another-node")):
        lab.kubectl("create", "-f", "-", stdin=_pod(name, {"app": "web"}, node))
    _wait(lambda: _labels(enricher, "web") == {"app": "web"}, "the pod in the agent's view")
    assert _labels(enricher, "elsewhere") is None  # another node's pod is not watched
    lab.kubectl(
        "-n", NS, "label", "pod", "web", "nodetap.io/capture=true", "app=shop", "--overwrite"
    )
    _wait(
        lambda: _labels(enricher, "web") == {"app": "shop", "nodetap.io/capture": "true"},
        "the relabel, without restart",
    )
    lab.restart_apiserver()
    lab.kubectl("-n", NS, "label", "pod", "web", "app=after-restart", "--overwrite")
    _wait(
        lambda: (_labels(enricher, "web") or {}).get("app") == "after-restart",
        "a change made after the API server restarted",
        timeout=90,
    )
    lab.kubectl("-n", NS, "delete", "pod", "web", "--grace-period=0", "--force")
    _wait(lambda: _labels(enricher, "web") is None, "the pod's deletion")


def test_ready_on_a_server_without_discovery_v1(agent_kubeconfig: Path) -> None:
    """Kubernetes 1.20 serves EndpointSlices as discovery.k8s.io/v1beta1 only: the agent's
    peer watches go on without them instead of never becoming ready."""
    enricher = Enricher.from_environment(node=NODE, kubeconfig=str(agent_kubeconfig), peers=True)
    try:
        _wait(enricher.ready, "every watch's first list")
        unavailable = [w.resource for w in enricher._watchers if w.unavailable]
        assert unavailable == ["endpointslices"]
    finally:
        enricher.close()
