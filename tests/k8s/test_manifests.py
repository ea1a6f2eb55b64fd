"""daemonset/: renders with kubectl's kustomize (1.32, and Debian's 1.20 when it can be
fetched), validates offline against two Kubernetes versions' schemas, and keeps its security
posture (least privilege, limits, probes, opt-in)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from tests.k8s.kube import DAEMONSET, kubectls, legacy_kubectl, render

TARGETS = [
    "",
    "base",
    "overlays/lab",
    "overlays/production",
    "overlays/canary",
    "overlays/privileged",
    "overlays/scale-out",
    "overlays/k8s-lab",  # issue 26: the Kubernetes lab's (scripts/k8s-lab.sh)
    "replay",
    "replay-agent",
    "overlays/lab-replay",  # the labs' replay Job (vagrant/demo.sh)
    "overlays/k8s-lab-replay",  # the same on the Kubernetes lab (tests/k8s_lab)
]
# the oldest and newest schemas kubernetes-validate ships (strict: unknown fields fail)
VERSIONS = ("1.25.0", kubernetes_validate.latest_version())
AGENT_CAPS = {"BPF", "PERFMON", "SYS_RESOURCE", "SYS_PTRACE"}  # no NET_ADMIN, SYS_ADMIN

Obj = dict[str, Any]


def _size(text: str) -> int:
    """512M (nodetap's units) or 640Mi (Kubernetes quantities), in bytes."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(text.rstrip("iB")[:-1]) * units[text.rstrip("iB")[-1]]


def _kubectl() -> str:
    found = kubectls()
    assert found, "no kubectl: install kubectl (or Debian's kubernetes-client)"
    return found[0][1]


def _render(target: str) -> list[Obj]:
    return render(_kubectl(), DAEMONSET / target)


def _get(objs: list[Obj], kind: str, name: str) -> Obj:
    for o in objs:
        if o["kind"] == kind and o["metadata"]["name"] == name:
            return o
    raise AssertionError(f"{kind}/{name} not rendered")


def _pod_specs(objs: list[Obj]) -> list[tuple[str, Obj]]:
    out = []
    for o in objs:
        if o["kind"] in ("DaemonSet", "Deployment", "Job", "StatefulSet"):
            out.append((f"{o['kind']}/{o['metadata']['name']}", o["spec"]["template"]["spec"]))
    return out


@pytest.mark.parametrize("target", TARGETS)
def test_renders_with_every_kubectl_the_same(target: str) -> None:
    rendered = {}
    for label, kubectl in kubectls():
        objs = render(kubectl, DAEMONSET / target)
        assert objs, f"{label}: nothing rendered"
        rendered[label] = sorted((o["kind"], o["metadata"]["name"]) for o in objs)
    assert rendered
    assert len(set(map(tuple, rendered.values()))) == 1, rendered


def test_legacy_kubectl_available() -> None:
    if legacy_kubectl() is None:
        pytest.skip("Debian's kubernetes-client could not be fetched: 1.20 rendering untested")


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("version", VERSIONS)
def test_validates_offline(target: str, version: str) -> None:
    for obj in _render(target):
        kubernetes_validate.validate(obj, version, strict=True)


def test_top_level_renders_the_base() -> None:
    assert _render("") == _render("base")


def test_base_security_posture() -> None:
    objs = _render("")
    ns = _get(objs, "Namespace", "nodetap")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    assert all(o["metadata"].get("namespace", "nodetap") == "nodetap" for o in objs)

    ds = _get(objs, "DaemonSet", "nodetap-agent")
    pod = ds["spec"]["template"]["spec"]
    assert pod["hostPID"] is True and not pod.get("hostNetwork")
    assert pod["tolerations"] == [{"operator": "Exists"}]
    assert ds["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    (agent,) = pod["containers"]
    sc = agent["securityContext"]
    assert sc["privileged"] is False and sc["allowPrivilegeEscalation"] is False
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert set(sc["capabilities"]["add"]) == AGENT_CAPS
    assert sc["seccompProfile"] == {"type": "RuntimeDefault"}  # not Unconfined
    env = {e["name"]: e for e in agent["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    port = agent["ports"][0]
    assert (
        port["name"] == "metrics"
        and f"--metrics-addr=0.0.0.0:{port['containerPort']}" in (agent["args"])
    )
    assert agent["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert agent["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    # host paths: read-only but tracefs, nodetap's own BPF folder and its spool (the redaction key
    # comes from the Secret nodetap-redaction-key, made by the install Job)
    volumes = {v["name"]: v for v in pod["volumes"]}
    writable = set()
    for m in agent["volumeMounts"]:
        host = volumes[m["name"]].get("hostPath")
        if host and not m.get("readOnly"):
            writable.add(host["path"])
    # tracefs writable (BCC writes uprobe_events for the TLS uprobes), debugfs not mounted
    assert writable == {"/sys/fs/bpf/nodetap", "/var/lib/nodetap/spool", "/sys/kernel/tracing"}
    assert "/sys/kernel/debug" not in {v.get("hostPath", {}).get("path") for v in volumes.values()}
    mounted = {
        volumes[m["name"]]["hostPath"]["path"]
        for m in agent["volumeMounts"]
        if "hostPath" in volumes[m["name"]]
    }
    assert {"/sys/kernel/tracing", "/lib/modules", "/usr/src", "/proc", "/sys/fs/cgroup"} <= mounted
    # the core decodes at once, with the edge rules: no raw (unredacted) records wait on a
    # disk, and the Python decoder (which --defer-* chooses) is not the node's
    assert not [a for a in agent["args"] if a.startswith(("--defer-", "--decoder"))]
    assert all(m["name"] != "defer" for m in agent["volumeMounts"])

    for where, spec in _pod_specs(objs):
        for c in spec.get("initContainers", []) + spec["containers"]:
            res = c["resources"]
            assert res["requests"]["cpu"] and res["requests"]["memory"], where
            assert res["limits"]["cpu"] and res["limits"]["memory"], where
            assert c["securityContext"].get("privileged") in (None, False), where
            assert c["securityContext"]["readOnlyRootFilesystem"] is True, where
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"], where

    fwd = _get(objs, "Deployment", "nodetap-forwarder")["spec"]["template"]["spec"]
    assert fwd["securityContext"]["runAsNonRoot"] is True
    assert fwd["automountServiceAccountToken"] is False
    assert "add" not in fwd["containers"][0]["securityContext"]["capabilities"]
    _get(objs, "PersistentVolumeClaim", "nodetap-forwarder")
    svc = _get(objs, "Service", "nodetap-forwarder")
    assert {p["name"] for p in svc["spec"]["ports"]} == {"grpc", "metrics"}
    cfg = _get(objs, "ConfigMap", "nodetap-config")
    assert "mode: opt-in" in cfg["data"]["targeting.yaml"] and "rules.yaml" in cfg["data"]


def test_rbac_reads_exactly_what_enrichment_needs() -> None:
    objs = _render("")
    agent = _get(objs, "ClusterRole", "nodetap-agent")["rules"]
    granted = {
        (g, r, v)
        for rule in agent
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }
    read = {"get", "list", "watch"}
    want = {("", r, v) for r in ("pods", "nodes", "namespaces", "services") for v in read}
    want |= {("discovery.k8s.io", "endpointslices", v) for v in read}
    want |= {("apps", "replicasets", "get")}
    assert granted == want
    replay = _get(objs, "ClusterRole", "nodetap-replay")["rules"]
    assert replay == [
        {"apiGroups": ["metrics.k8s.io"], "resources": ["pods", "nodes"], "verbs": ["get", "list"]}
    ]
    assert not [
        o
        for o in objs
        if o["kind"] in ("Secret", "MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
    ]
    # one Role: the install Job creates the forwarder's TLS and token Secrets, reads only those
    roles = [o for o in objs if o["kind"] == "Role"]
    assert [r["metadata"]["name"] for r in roles] == ["nodetap-secrets"]
    assert roles[0]["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
        {
            "apiGroups": [""],
            "resources": ["secrets"],
            "resourceNames": [
                "nodetap-forwarder-tls",
                "nodetap-token",
                "nodetap-replay-agent-tls",
                "nodetap-redaction-key",
            ],
            "verbs": ["get"],
        },
    ]
    (binding,) = [o for o in objs if o["kind"] == "RoleBinding"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "nodetap-secrets", "namespace": "nodetap"}
    ]


def test_overlays() -> None:
    lab = _render("overlays/lab")
    ra = _get(lab, "Deployment", "nodetap-replay-agent")
    assert ra["metadata"]["namespace"] == "nodetap"
    agent = _get(lab, "DaemonSet", "nodetap-agent")["spec"]["template"]["spec"]["containers"][0]
    assert agent["image"] == "nodetap:dev"
    assert (
        "namespaces: [demo]" in _get(lab, "ConfigMap", "nodetap-config")["data"]["targeting.yaml"]
    )
    _get(lab, "Secret", "nodetap-replay-token")

    prod = _render("overlays/production")
    assert not [o for o in prod if "replay-agent" in o["metadata"]["name"]]  # off switch
    for kind, name in (("DaemonSet", "nodetap-agent"), ("Deployment", "nodetap-forwarder")):
        spec = _get(prod, kind, name)["spec"]["template"]["spec"]
        assert spec["imagePullSecrets"] == [{"name": "nodetap-pull"}]
        assert spec["containers"][0]["image"].endswith("/platform/nodetap:0.1.0")
    ds = _get(prod, "DaemonSet", "nodetap-agent")["spec"]["template"]["spec"]
    assert set(ds["containers"][0]["securityContext"]["capabilities"]["add"]) == AGENT_CAPS

    canary = _get(_render("overlays/canary"), "DaemonSet", "nodetap-agent")
    assert canary["spec"]["template"]["spec"]["nodeSelector"] == {"nodetap.io/canary": "true"}

    priv = _get(_render("overlays/privileged"), "DaemonSet", "nodetap-agent")
    sc = priv["spec"]["template"]["spec"]["containers"][0]["securityContext"]
    assert sc["privileged"] is True
    assert sc["seccompProfile"] == {"type": "Unconfined"}


def test_scale_out_overlay() -> None:
    objs = _render("overlays/scale-out")
    dep = _get(objs, "Deployment", "nodetap-forwarder")
    assert dep["spec"]["replicas"] >= 2 and dep["spec"]["strategy"]["type"] == "RollingUpdate"
    spec = dep["spec"]["template"]["spec"]
    (fwd,) = spec["containers"]
    store = next(a for a in fwd["args"] if a.startswith("--store="))
    nats = _get(objs, "StatefulSet", "nodetap-nats")
    assert nats["spec"]["replicas"] == 3 and nats["spec"]["serviceName"] == "nodetap-nats"
    hosts = [f"nodetap-nats-{i}.nodetap-nats:4222" for i in range(3)]
    assert store == "--store=nats://" + ",".join(hosts)
    assert not any(a.startswith("--data-dir") for a in fwd["args"])
    assert "persistentVolumeClaim" not in str(spec.get("volumes"))
    svc = _get(objs, "Service", "nodetap-nats")
    assert svc["spec"]["clusterIP"] == "None"
    assert {p["port"] for p in svc["spec"]["ports"]} == {4222, 6222, 8222}
    conf = _get(objs, "ConfigMap", "nodetap-nats")["data"]["nats.conf"]
    assert "jetstream" in conf and all(
        f"nodetap-nats-{i}.nodetap-nats:6222" in conf for i in range(3)
    )
    _get(objs, "Service", "nodetap-forwarder")  # agents send to the same Service
    for name in ("nodetap-forwarder", "nodetap-nats"):
        _get(objs, "PodDisruptionBudget", name)
    for where, pod in _pod_specs(objs):
        for c in pod.get("initContainers", []) + pod["containers"]:
            assert c["resources"]["limits"]["memory"], where
            assert c["securityContext"]["readOnlyRootFilesystem"] is True, where
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"], where


@pytest.mark.parametrize("target", ["replay", "overlays/lab"])
def test_replay_generators_placement(target: str) -> None:
    specs = [(w, s) for w, s in _pod_specs(_render(target)) if "replay" in w]
    assert specs
    for where, spec in specs:
        assert spec["hostNetwork"] is True, where
        assert spec["dnsPolicy"] == "ClusterFirstWithHostNet", where
        assert spec["nodeSelector"] == {"nodetap.io/load-generator": "true"}, where
        anti = spec["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert anti[0]["topologyKey"] == "kubernetes.io/hostname", where
        for c in spec.get("initContainers", []) + spec["containers"]:
            assert c["resources"]["requests"] == c["resources"]["limits"], where


def test_dockerfile_copies_what_exists_and_installs_bcc() -> None:
    repo = DAEMONSET.parent
    text = (repo / "Dockerfile").read_text()
    assert "python3-bpfcc" in text and "--system-site-packages" in text
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:  # not from another stage
            for src in line.split()[1:-1]:
                assert (repo / src).exists(), f"Dockerfile copies missing {src}"
    assert Path(repo / ".dockerignore").read_text().count(".venv") == 1


def test_k8s_lab_pods_on_the_host_network_listen_on_loopback() -> None:
    """overlays/k8s-lab puts nodetap's pods on the host network: their listeners are moved to
    loopback by argument position (patchesJson6902), so a reordering of the base's args
    shows here."""
    objs = render(_kubectl(), DAEMONSET / "overlays" / "k8s-lab")
    listeners = 0
    for name, spec in _pod_specs(objs):
        assert spec.get("hostNetwork"), name
        for c in spec["containers"]:
            for a in c.get("args", []):
                if a.startswith(("--listen=", "--metrics-addr=")):
                    assert a.split("=", 1)[1].startswith("127.0.0.1:"), (name, a)
                    listeners += 1
    assert listeners == 5
