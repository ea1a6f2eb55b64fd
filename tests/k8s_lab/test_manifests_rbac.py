"""The shipped manifests against a real API server (Kubernetes 1.20 built from Debian's
source by scripts/k8s-lab.sh): they apply, and each service account can do exactly what it
needs and nothing more (`kubectl auth can-i` answered by the server's RBAC authorizer)."""

from __future__ import annotations

import pytest

from tests.k8s_lab.lab import REPO, K8sLab

pytestmark = [pytest.mark.root, pytest.mark.slow]

# What enrichment and targeting read (daemonset/base/rbac.yaml says why each).
AGENT_NEEDS = [
    (verb, resource)
    for resource in ("pods", "nodes", "namespaces", "services", "endpointslices.discovery.k8s.io")
    for verb in ("get", "list", "watch")
] + [("get", "replicasets.apps")]
REPLAY_NEEDS = [("get", "pods.metrics.k8s.io"), ("list", "nodes.metrics.k8s.io")]
# What none of nodetap's accounts may do: read secrets, run or exec into pods, reach the
# kubelet through the API server, change anything.
NOBODY_MAY = [
    ("get", "secrets"), ("list", "secrets"), ("watch", "secrets"),
    ("create", "pods/exec"), ("create", "pods/attach"), ("create", "pods/portforward"),
    ("get", "nodes/proxy"), ("create", "nodes/proxy"),
    ("create", "pods"), ("delete", "pods"), ("patch", "pods"), ("patch", "nodes"),
    ("list", "configmaps"), ("create", "serviceaccounts/token"), ("impersonate", "users"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"), ("escalate", "clusterroles"),
    ("list", "replicasets.apps"), ("create", "daemonsets.apps"),
]  # fmt: skip


@pytest.fixture(scope="module")
def applied(k8s_lab: K8sLab) -> K8sLab:
    # left applied: the lab is removed whole at the end of the session, and deleting the
    # namespace here would leave it terminating for the next module's apply
    k8s_lab.kubectl("apply", "-k", str(REPO / "daemonset" / "overlays" / "lab"), timeout=120)
    return k8s_lab


def test_lab_overlay_applies_and_creates_the_daemonset(applied: K8sLab) -> None:
    ds = applied.kubectl("-n", "nodetap", "get", "daemonset", "-o", "name")
    assert "daemonset.apps/nodetap-agent" in ds.split()
    sas = applied.kubectl("-n", "nodetap", "get", "serviceaccounts", "-o", "name").split()
    for sa in ("nodetap-agent", "nodetap-forwarder", "nodetap-replay"):
        assert f"serviceaccount/{sa}" in sas


@pytest.mark.parametrize(("verb", "resource"), AGENT_NEEDS)
def test_agent_can_do_what_it_needs(applied: K8sLab, verb: str, resource: str) -> None:
    assert applied.can_i(verb, resource, "nodetap-agent")


@pytest.mark.parametrize(("verb", "resource"), REPLAY_NEEDS)
def test_replay_can_read_metrics(applied: K8sLab, verb: str, resource: str) -> None:
    assert applied.can_i(verb, resource, "nodetap-replay")


@pytest.mark.parametrize("sa", ["nodetap-agent", "nodetap-forwarder", "nodetap-replay"])
def test_no_account_can_do_more(applied: K8sLab, sa: str) -> None:
    allowed = [(v, r) for v, r in NOBODY_MAY if applied.can_i(v, r, sa)]
    assert not allowed, f"{sa} may {allowed}"


def test_forwarder_reads_nothing_from_the_api(applied: K8sLab) -> None:
    for verb, resource in AGENT_NEEDS:
        assert not applied.can_i(verb, resource, "nodetap-forwarder"), (verb, resource)
