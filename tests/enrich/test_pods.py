"""Pod objects (kubernetes client models) -> PodInfo, workloads, the pod and peer indexes."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from agent.enrich import OwnerResolver, PeerIndex, PodIndex, PodInfo
from tests.enrich.podfactory import make_pod

_CLUSTER_IPS = (
    "cluster_ips"
    if "cluster_ips" in getattr(client.V1ServiceSpec, "model_fields", {})
    else "cluster_i_ps"
)
CID_A = "a" * 64
CID_B = "b" * 64
UID = "11111111-2222-3333-4444-555555555555"


def test_pod_info_from_model() -> None:
    pod = make_pod(
        "web-7d4b9c-xk2lp",
        "shop",
        uid=UID,
        labels={"app": "web", "pod-template-hash": "7d4b9c"},
        annotations={"nodetap.io/capture": "true"},
        containers={"nginx": f"containerd://{CID_A}", "sidecar": f"cri-o://{CID_B}"},
        owner=("ReplicaSet", "web-7d4b9c"),
        ip="10.244.0.7",
    )
    info = PodInfo.from_model(pod)
    assert info.uid == UID and info.key == "shop/web-7d4b9c-xk2lp"
    assert info.labels == {"app": "web", "pod-template-hash": "7d4b9c"}
    assert info.annotations == {"nodetap.io/capture": "true"}
    assert info.containers == {CID_A: "nginx", CID_B: "sidecar"}
    assert info.container_names == ("nginx", "sidecar")
    assert info.pod_ips == ("10.244.0.7",)
    assert (info.owner_kind, info.owner_name) == ("ReplicaSet", "web-7d4b9c")
    assert info.workload == "Deployment/web"  # by the pod-template-hash convention
    assert info.node_name == "node-1" and info.phase == "Running"


def test_container_named_before_the_status_lists_its_id() -> None:
    """The kubelet reports a started container's id a moment after it runs (seconds on a
    loaded node): a pod with one container names it meanwhile; with more, or with an init or
    ephemeral container, the id alone decides."""
    starting = PodInfo.from_model(make_pod("web", uid=UID, containers={"web": ""}))
    assert starting.containers == {}
    assert starting.container_of(CID_A) == "web"
    running = PodInfo.from_model(
        make_pod("web", uid=UID, containers={"web": f"containerd://{CID_A}"})
    )
    assert running.container_of(CID_A) == "web"
    two = PodInfo.from_model(make_pod("p", uid=UID, containers={"a": "", "b": ""}))
    assert two.container_of(CID_A) == ""
    with_init = make_pod("p", uid=UID, containers={"web": ""})
    assert with_init.spec is not None
    with_init.spec.init_containers = [client.V1Container(name="setup", image="busybox")]
    assert PodInfo.from_model(with_init).container_of(CID_A) == ""
    debugged = make_pod("p", uid=UID, containers={"web": ""})
    assert debugged.spec is not None
    debugged.spec.ephemeral_containers = [client.V1EphemeralContainer(name="dbg", image="busybox")]
    assert PodInfo.from_model(debugged).container_of(CID_A) == ""


def test_workloads_for_each_owner_kind() -> None:
    for kind, name, want in [
        ("StatefulSet", "db", "StatefulSet/db"),
        ("DaemonSet", "logs", "DaemonSet/logs"),
        ("Job", "migrate-28301", "Job/migrate-28301"),
        ("ReplicaSet", "bare-rs", "ReplicaSet/bare-rs"),  # no pod-template-hash: a bare RS
    ]:
        info = PodInfo.from_model(make_pod("p", uid=UID, owner=(kind, name)))
        assert info.workload == want
    assert PodInfo.from_model(make_pod("p", uid=UID)).workload == ""


class _Apps:
    """Stands for AppsV1Api: ReplicaSets owned by a Deployment with a non-conventional name."""

    def __init__(self) -> None:
        self.calls = 0

    def read_namespaced_replica_set(self, name: str, namespace: str) -> Any:
        self.calls += 1
        if name == "missing":
            raise client.ApiException(status=403, reason="Forbidden")
        return client.V1ReplicaSet(
            metadata=client.V1ObjectMeta(
                name=name,
                namespace=namespace,
                owner_references=[
                    client.V1OwnerReference(
                        api_version="apps/v1",
                        kind="Deployment",
                        name="checkout",
                        uid="d",
                        controller=True,
                    )
                ],
            ),
            spec=client.V1ReplicaSetSpec(selector=client.V1LabelSelector(match_labels={"a": "b"})),
        )


def test_owner_resolver_asks_the_api_once_and_falls_back() -> None:
    apps = _Apps()
    r = OwnerResolver(apps, max_entries=2)
    assert r.workload("shop", "ReplicaSet", "rs-1", {}) == "Deployment/checkout"
    assert r.workload("shop", "ReplicaSet", "rs-1", {}) == "Deployment/checkout"
    assert apps.calls == 1
    r.workload("shop", "ReplicaSet", "rs-2", {})
    r.workload("shop", "ReplicaSet", "rs-3", {})  # evicts rs-1 (bounded)
    r.workload("shop", "ReplicaSet", "rs-1", {})
    assert apps.calls == 4
    # forbidden: the naming convention answers
    assert r.workload("shop", "ReplicaSet", "missing", {"pod-template-hash": "x"}) == (
        "ReplicaSet/missing"
    )
    assert r.workload("shop", "StatefulSet", "db", {}) == "StatefulSet/db"


def test_pod_index_lookups_listeners_and_bound() -> None:
    idx = PodIndex(max_pods=2)
    changes: list[int] = []
    idx.add_listener(lambda: changes.append(idx.generation))
    a = PodInfo.from_model(
        make_pod("a", uid="uid-a", containers={"c": f"containerd://{CID_A}"}, ip="10.0.0.1")
    )
    b = PodInfo.from_model(
        make_pod("b", uid="uid-b", containers={"c": f"containerd://{CID_B}"}, ip="10.0.0.2")
    )
    idx.replace([a])
    idx.upsert(b)
    assert idx.by_container(CID_A) == a and idx.by_ip("10.0.0.2") == b
    assert idx.get("uid-b") == b and len(idx) == 2 and idx.synced
    idx.upsert(PodInfo.from_model(make_pod("c", uid="uid-c")))  # over the bound: a goes
    assert idx.get("uid-a") is None and idx.by_container(CID_A) is None
    idx.delete("uid-b")
    assert idx.by_ip("10.0.0.2") is None and len(idx) == 1
    assert changes == [1, 2, 3, 4]
    host = PodInfo.from_model(make_pod("h", uid="uid-h", ip="192.168.1.5", host_network=True))
    idx.upsert(host)
    assert idx.by_ip("192.168.1.5") is None  # a host-network pod's IP is the node's


def test_peer_index_pods_services_endpointslices() -> None:
    pods = PodIndex()
    pods.replace([PodInfo.from_model(make_pod("local", "shop", uid="u1", ip="10.244.0.5"))])
    peers = PeerIndex(pods)
    ips: dict[str, Any] = {_CLUSTER_IPS: ["10.96.0.20", "fd00::20"]}
    svc = client.V1Service(
        metadata=client.V1ObjectMeta(name="cart", namespace="shop"),
        spec=client.V1ServiceSpec(cluster_ip="10.96.0.20", **ips),
    )
    es = client.V1EndpointSlice(
        address_type="IPv4",
        metadata=client.V1ObjectMeta(
            name="cart-abc", namespace="shop", labels={"kubernetes.io/service-name": "cart"}
        ),
        endpoints=[
            client.V1Endpoint(
                addresses=["10.244.1.9"],
                target_ref=client.V1ObjectReference(kind="Pod", name="cart-0", namespace="shop"),
            ),
            client.V1Endpoint(
                addresses=["10.244.0.5"],
                target_ref=client.V1ObjectReference(kind="Pod", name="local", namespace="shop"),
            ),
        ],
    )
    peers.services_replace([svc])
    peers.slices_replace([es])
    s = peers.lookup("10.96.0.20")
    assert s is not None and (s.kind, s.namespace, s.name) == ("service", "shop", "cart")
    assert peers.lookup("fd00::20") is not None
    remote = peers.lookup("10.244.1.9")
    assert (
        remote is not None
        and remote.label() == "pod/shop/cart-0"
        and remote.service == ("shop/cart")
    )
    local = peers.lookup("10.244.0.5")
    assert local is not None and local.name == "local" and local.service == "shop/cart"
    assert peers.lookup("8.8.8.8") is None
    peers.service_delete(svc)
    peers.slice_delete(es)
    assert peers.lookup("10.96.0.20") is None and peers.lookup("10.244.1.9") is None
