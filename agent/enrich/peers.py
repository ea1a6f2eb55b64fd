"""A peer's IP -> the pod or Service behind it.

Local pods come from the node's ``PodIndex``; Service cluster IPs and the endpoints of every
Service (pods on other nodes included) come from Services and EndpointSlices, node addresses
from Nodes, fed by
``agent.enrich.watch`` list/watches. Thread-safe; replaced wholesale on a relist.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from agent.enrich.pods import PodIndex

SERVICE_NAME_LABEL = "kubernetes.io/service-name"


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """Who an IP is: kind 'pod', 'service', 'endpoint' (an address of a Service that is not a
    pod) or 'node', with namespace/name and the Service the address belongs to when known."""

    ip: str
    kind: str
    namespace: str = ""
    name: str = ""
    service: str = ""

    def label(self) -> str:
        if self.kind == "service":
            return f"svc/{self.namespace}/{self.name}"
        if self.kind == "pod":
            return f"pod/{self.namespace}/{self.name}"
        if self.kind == "node":
            return f"node/{self.name}"
        return self.ip


def _service_key(obj: Any) -> str:
    return f"{obj.metadata.namespace}/{obj.metadata.name}"


class PeerIndex:
    """IP -> PeerInfo from local pods, Services and EndpointSlices."""

    def __init__(self, pods: PodIndex | None = None) -> None:
        self._pods = pods
        self._lock = threading.Lock()
        # service key -> cluster IPs; endpointslice key -> {ip: (service, pod ns, pod name)}
        self._services: dict[str, tuple[str, ...]] = {}
        self._slices: dict[str, dict[str, tuple[str, str, str]]] = {}
        self._nodes: dict[str, tuple[str, ...]] = {}
        self._by_ip: dict[str, PeerInfo] = {}

    # --- Nodes (a peer on a node IP: kubelet, host-network pods, NodePorts) ---------------
    def node_upsert(self, node: Any) -> None:
        addrs = getattr(node.status, "addresses", None) or ()
        ips = tuple(a.address for a in addrs if a.type in ("InternalIP", "ExternalIP"))
        with self._lock:
            self._nodes[node.metadata.name] = ips
            self._rebuild()

    def node_delete(self, node: Any) -> None:
        with self._lock:
            self._nodes.pop(node.metadata.name, None)
            self._rebuild()

    def nodes_replace(self, items: list[Any]) -> None:
        with self._lock:
            self._nodes.clear()
        for n in items:
            self.node_upsert(n)

    # --- Services -------------------------------------------------------------------------
    def service_upsert(self, svc: Any) -> None:
        spec = svc.spec
        # 'cluster_ips' in kubernetes-client 34+, 'cluster_i_ps' before
        ips = list(getattr(spec, "cluster_ips", None) or getattr(spec, "cluster_i_ps", None) or ())
        if spec.cluster_ip and spec.cluster_ip not in ips:
            ips.insert(0, spec.cluster_ip)
        ips = [ip for ip in ips if ip and ip != "None"]
        for ing in getattr(getattr(svc.status, "load_balancer", None), "ingress", None) or ():
            if ing.ip:
                ips.append(ing.ip)
        with self._lock:
            self._services[_service_key(svc)] = tuple(ips)
            self._rebuild()

    def service_delete(self, svc: Any) -> None:
        with self._lock:
            self._services.pop(_service_key(svc), None)
            self._rebuild()

    def services_replace(self, items: list[Any]) -> None:
        with self._lock:
            self._services.clear()
        for s in items:
            self.service_upsert(s)
        with self._lock:
            self._rebuild()

    # --- EndpointSlices -------------------------------------------------------------------
    def slice_upsert(self, es: Any) -> None:
        meta = es.metadata
        service = (meta.labels or {}).get(SERVICE_NAME_LABEL, "")
        entries: dict[str, tuple[str, str, str]] = {}
        for ep in es.endpoints or ():
            ref = ep.target_ref
            pod_ns = pod_name = ""
            if ref is not None and ref.kind == "Pod":
                pod_ns, pod_name = ref.namespace or meta.namespace, ref.name
            for addr in ep.addresses or ():
                entries[addr] = (f"{meta.namespace}/{service}" if service else "", pod_ns, pod_name)
        with self._lock:
            self._slices[_service_key(es)] = entries
            self._rebuild()

    def slice_delete(self, es: Any) -> None:
        with self._lock:
            self._slices.pop(_service_key(es), None)
            self._rebuild()

    def slices_replace(self, items: list[Any]) -> None:
        with self._lock:
            self._slices.clear()
        for es in items:
            self.slice_upsert(es)
        with self._lock:
            self._rebuild()

    def _rebuild(self) -> None:
        by_ip: dict[str, PeerInfo] = {}
        for name, ips in self._nodes.items():
            for ip in ips:
                by_ip[ip] = PeerInfo(ip, "node", "", name)
        for entries in self._slices.values():
            for ip, (service, pod_ns, pod_name) in entries.items():
                if pod_name:
                    by_ip[ip] = PeerInfo(ip, "pod", pod_ns, pod_name, service)
                elif ip not in by_ip:
                    ns, _, name = service.partition("/")
                    by_ip[ip] = PeerInfo(ip, "endpoint", ns, name, service)
        for key, ips in self._services.items():
            ns, _, name = key.partition("/")
            for ip in ips:
                by_ip[ip] = PeerInfo(ip, "service", ns, name, key)
        self._by_ip = by_ip

    # --- lookup ---------------------------------------------------------------------------
    def lookup(self, ip: str) -> PeerInfo | None:
        """The pod or Service at ``ip``; None when nodetap does not know it."""
        if self._pods is not None:
            pod = self._pods.by_ip(ip)
            if pod is not None:
                with self._lock:
                    known = self._by_ip.get(ip)
                return PeerInfo(ip, "pod", pod.namespace, pod.name, known.service if known else "")
        with self._lock:
            return self._by_ip.get(ip)
