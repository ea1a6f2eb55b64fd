"""The node-scoped pod watch, with the real kubernetes client against a local API endpoint
that speaks the list/watch protocol (chunked events, resourceVersion, 410 Gone)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
from kubernetes import client
from prometheus_client import REGISTRY

from agent.enrich import Enricher
from tests.enrich.fakeapi import FakeKubeAPI, to_dict
from tests.enrich.podfactory import make_pod

CID = "c" * 64


def wait_until(pred: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"condition not met in {timeout}s")


def relists(cause: str) -> float:
    v = REGISTRY.get_sample_value("nodetap_k8s_relists_total", {"resource": "pods", "cause": cause})
    return v or 0.0


@pytest.fixture
def api() -> Iterator[FakeKubeAPI]:
    a = FakeKubeAPI().start()
    try:
        yield a
    finally:
        a.close()


def _pod(name: str, uid: str, node: str = "node-1", **kw: object) -> dict[str, object]:
    return to_dict(make_pod(name, "shop", uid=uid, node=node, **kw))  # type: ignore[arg-type]


def test_list_then_watch_add_modify_delete(api: FakeKubeAPI) -> None:
    api.replicasets[("shop", "web-5f6d")] = to_dict(
        client.V1ReplicaSet(
            api_version="apps/v1",
            kind="ReplicaSet",
            metadata=client.V1ObjectMeta(
                name="web-5f6d",
                namespace="shop",
                owner_references=[
                    client.V1OwnerReference(
                        api_version="apps/v1",
                        kind="Deployment",
                        name="web-frontend",
                        uid="d1",
                        controller=True,
                    )
                ],
            ),
            spec=client.V1ReplicaSetSpec(selector=client.V1LabelSelector(match_labels={"a": "b"})),
        )
    )
    api.add(
        "pods",
        _pod(
            "web-5f6d-aaaaa",
            "uid-1",
            owner=("ReplicaSet", "web-5f6d"),
            containers={"nginx": f"containerd://{CID}"},
            ip="10.244.0.10",
        ),
    )
    api.add("pods", _pod("elsewhere", "uid-9", node="node-2"))
    enricher = Enricher(node="node-1")
    enricher.start_watches(api.api_client(), resync_seconds=300, peers=False)
    try:
        wait_until(enricher.ready)
        pods = enricher.pods
        assert pods is not None
        assert [p.name for p in pods.pods()] == ["web-5f6d-aaaaa"]  # node-2's pod is not ours
        first = pods.get("uid-1")
        assert first is not None
        # the ReplicaSet's owner was asked for: the Deployment's name is not the RS prefix
        assert first.workload == "Deployment/web-frontend"
        assert pods.by_container(CID) == first

        api.add("pods", _pod("db-0", "uid-2", owner=("StatefulSet", "db")))
        wait_until(lambda: pods.get("uid-2") is not None)
        api.add("pods", _pod("db-0", "uid-2", owner=("StatefulSet", "db"), labels={"v": "2"}))
        wait_until(lambda: (p := pods.get("uid-2")) is not None and p.labels == {"v": "2"})
        api.delete("pods", _pod("db-0", "uid-2"))
        wait_until(lambda: pods.get("uid-2") is None)
        api.add("pods", _pod("late", "uid-8", node="node-2"))  # filtered by the field selector
        time.sleep(0.2)
        assert pods.get("uid-8") is None
    finally:
        enricher.close()
    # what the client asked: a node-scoped list, then watches from the list's version
    lists = [q for p, q in api.requests if p == "/api/v1/pods" and "watch" not in q]
    watches = [q for p, q in api.requests if p == "/api/v1/pods" and "watch" in q]
    assert lists[0]["fieldSelector"] == ["spec.nodeName=node-1"]
    assert watches and watches[0]["resourceVersion"][0].isdigit()
    assert watches[0]["fieldSelector"] == ["spec.nodeName=node-1"]


def test_410_gone_forces_a_relist_that_finds_lost_changes(api: FakeKubeAPI) -> None:
    api.add("pods", _pod("a", "uid-a"))
    enricher = Enricher(node="node-1")
    enricher.start_watches(api.api_client(), resync_seconds=300, peers=False)
    try:
        wait_until(enricher.ready)
        pods = enricher.pods
        assert pods is not None and pods.get("uid-a") is not None
        wait_until(lambda: api.count("pods", watch=True) >= 1)
        gone_before = relists("gone")
        lists_before = api.count("pods", watch=False)
        # a change whose event the watch never delivers, then the history is compacted away
        api.add("pods", _pod("b", "uid-b"), record=False)
        api.delete("pods", _pod("a", "uid-a"), record=False)
        time.sleep(0.2)
        assert pods.get("uid-b") is None  # the watch cannot see it
        api.expire()
        wait_until(lambda: pods.get("uid-b") is not None)
        assert pods.get("uid-a") is None
        assert relists("gone") == gone_before + 1
        assert api.count("pods", watch=False) == lists_before + 1
        # and the watch goes on from the new list's version
        api.add("pods", _pod("c", "uid-c"))
        wait_until(lambda: pods.get("uid-c") is not None)
    finally:
        enricher.close()


def test_periodic_resync_relists(api: FakeKubeAPI) -> None:
    api.add("pods", _pod("a", "uid-a"))
    enricher = Enricher(node="node-1")
    before = relists("resync")
    enricher.start_watches(api.api_client(), resync_seconds=1, peers=False)
    try:
        wait_until(lambda: relists("resync") >= before + 1, timeout=15)
        assert enricher.pods is not None and enricher.pods.get("uid-a") is not None
    finally:
        t0 = time.monotonic()
        enricher.close()
        closing = time.monotonic() - t0
    assert closing < 5  # stop() interrupts an open watch


def test_services_and_endpointslices_for_peers(api: FakeKubeAPI) -> None:
    api.add(
        "services",
        to_dict(
            client.V1Service(
                api_version="v1",
                kind="Service",
                metadata=client.V1ObjectMeta(name="cart", namespace="shop"),
                spec=client.V1ServiceSpec(cluster_ip="10.96.7.7"),
            )
        ),
    )
    enricher = Enricher(node="node-1")
    enricher.start_watches(api.api_client(), resync_seconds=300, peers=True)
    try:
        wait_until(enricher.ready)
        svc = enricher.peer("10.96.7.7")
        assert svc is not None and svc.label() == "svc/shop/cart"
        api.add(
            "endpointslices",
            to_dict(
                client.V1EndpointSlice(
                    api_version="discovery.k8s.io/v1",
                    kind="EndpointSlice",
                    address_type="IPv4",
                    metadata=client.V1ObjectMeta(
                        name="cart-x",
                        namespace="shop",
                        labels={"kubernetes.io/service-name": "cart"},
                    ),
                    endpoints=[
                        client.V1Endpoint(
                            addresses=["10.244.3.3"],
                            target_ref=client.V1ObjectReference(
                                kind="Pod", name="cart-1", namespace="shop"
                            ),
                        )
                    ],
                )
            ),
        )
        wait_until(lambda: enricher.peer("10.244.3.3") is not None)
        peer = enricher.peer("10.244.3.3")
        assert (
            peer is not None and peer.label() == "pod/shop/cart-1" and peer.service == "shop/cart"
        )
        node = client.V1Node(
            api_version="v1",
            kind="Node",
            metadata=client.V1ObjectMeta(name="node-2"),
            status=client.V1NodeStatus(
                addresses=[
                    client.V1NodeAddress(type="InternalIP", address="192.168.5.2"),
                    client.V1NodeAddress(type="Hostname", address="node-2"),
                ]
            ),
        )
        api.add("nodes", to_dict(node))
        wait_until(lambda: enricher.peer("192.168.5.2") is not None)
        at_node = enricher.peer("192.168.5.2")
        assert at_node is not None and at_node.label() == "node/node-2"
    finally:
        enricher.close()


def test_api_down_is_not_ready_and_does_not_fail() -> None:
    cfg = client.Configuration()
    cfg.host = "http://127.0.0.1:9"  # nothing listens on the discard port
    enricher = Enricher(node="node-1")
    enricher.start_watches(client.ApiClient(cfg), peers=False)
    try:
        time.sleep(0.5)
        assert not enricher.ready()
        info = enricher.enrich(1)
        assert info.pid == 1 and info.pod == ""
    finally:
        enricher.close()
