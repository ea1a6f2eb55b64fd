"""The pods of this node, indexed by uid, container id and IP, and their owning workloads.

``PodInfo.from_model`` turns a kubernetes-client ``V1Pod`` into the few fields nodetap needs;
``PodIndex`` holds them (thread-safe, bounded) for the enricher and the targeting. The watch
that feeds it lives in ``agent.enrich.watch``.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from agent.enrich.cgroup import strip_runtime_prefix

log = logging.getLogger(__name__)

# Owner kinds that are workloads in their own right (the pod's owner is the workload).
_WORKLOAD_KINDS = ("StatefulSet", "DaemonSet", "Job", "ReplicaSet", "ReplicationController")


@dataclass(frozen=True, slots=True)
class PodInfo:
    """What nodetap keeps of a pod."""

    uid: str
    name: str
    namespace: str
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    node_name: str = ""
    phase: str = ""
    host_network: bool = False
    pod_ips: tuple[str, ...] = ()
    # container id (without the runtime:// prefix) -> container name
    containers: dict[str, str] = field(default_factory=dict)
    container_names: tuple[str, ...] = ()
    # the name of the pod's only container when its spec has exactly one and no init or
    # ephemeral container: what a process of the pod runs in before its status names it
    sole_container: str = ""
    owner_kind: str = ""
    owner_name: str = ""
    # "Kind/name" of the owning workload, e.g. "Deployment/web"; "" for a bare pod.
    workload: str = ""
    resource_version: str = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def container_of(self, container_id: str) -> str:
        """The container's name: from the pod's status, or, while the status does not list
        the container's id yet (the kubelet reports a started container a moment later;
        longer on a loaded node), the pod's only container."""
        return self.containers.get(container_id) or self.sole_container

    @classmethod
    def from_model(cls, pod: Any, resolver: OwnerResolver | None = None) -> PodInfo:
        """Build from a kubernetes.client.V1Pod (or anything with the same attributes)."""
        meta = pod.metadata
        spec = pod.spec
        status = pod.status
        containers: dict[str, str] = {}
        if status is not None:
            for group in (
                status.init_container_statuses,
                status.container_statuses,
                getattr(status, "ephemeral_container_statuses", None),
            ):
                for cs in group or ():
                    if cs.container_id:
                        cid, _ = strip_runtime_prefix(cs.container_id)
                        containers[cid] = cs.name
        ips: list[str] = []
        if status is not None:
            # 'pod_ips' in kubernetes-client 34+, 'pod_i_ps' before
            for pip in getattr(status, "pod_ips", None) or getattr(status, "pod_i_ps", None) or ():
                if pip.ip and pip.ip not in ips:
                    ips.append(pip.ip)
            if status.pod_ip and status.pod_ip not in ips:
                ips.insert(0, status.pod_ip)
        owner_kind = owner_name = ""
        for ref in meta.owner_references or ():
            if ref.controller or not owner_kind:
                owner_kind, owner_name = ref.kind, ref.name
        names = tuple(c.name for c in (spec.containers or ())) if spec is not None else ()
        others = spec is not None and bool(
            spec.init_containers or getattr(spec, "ephemeral_containers", None)
        )
        labels = dict(meta.labels or {})
        workload = ""
        if owner_kind:
            if resolver is not None:
                workload = resolver.workload(meta.namespace, owner_kind, owner_name, labels)
            else:
                workload = workload_by_convention(owner_kind, owner_name, labels)
        return cls(
            uid=meta.uid or "",
            name=meta.name or "",
            namespace=meta.namespace or "",
            labels=labels,
            annotations=dict(meta.annotations or {}),
            node_name=(spec.node_name or "") if spec is not None else "",
            phase=(status.phase or "") if status is not None else "",
            host_network=bool(spec.host_network) if spec is not None else False,
            pod_ips=tuple(ips),
            containers=containers,
            container_names=names,
            sole_container=names[0] if len(names) == 1 and not others else "",
            owner_kind=owner_kind,
            owner_name=owner_name,
            workload=workload,
            resource_version=meta.resource_version or "",
        )


def workload_by_convention(owner_kind: str, owner_name: str, labels: dict[str, str]) -> str:
    """The workload from the owner reference alone: a ReplicaSet named '<deployment>-<hash>'
    with the pod's pod-template-hash label belongs to Deployment '<deployment>'."""
    if owner_kind == "ReplicaSet":
        h = labels.get("pod-template-hash", "")
        if h and owner_name.endswith("-" + h):
            return f"Deployment/{owner_name[: -len(h) - 1]}"
    return f"{owner_kind}/{owner_name}"


class ReplicaSetReader(Protocol):
    def read_namespaced_replica_set(self, name: str, namespace: str) -> Any: ...


class OwnerResolver:
    """Owner reference -> workload, asking the API for ReplicaSets' owners (bounded cache).
    Falls back to the naming convention when the API cannot answer."""

    def __init__(self, apps_api: ReplicaSetReader | None = None, max_entries: int = 1024) -> None:
        self._apps = apps_api
        self._cache: OrderedDict[tuple[str, str], str] = OrderedDict()
        self._max = max_entries
        self._lock = threading.Lock()

    def workload(self, namespace: str, kind: str, name: str, labels: dict[str, str]) -> str:
        if kind != "ReplicaSet" or self._apps is None:
            return workload_by_convention(kind, name, labels)
        key = (namespace, name)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        try:
            rs = self._apps.read_namespaced_replica_set(name, namespace)
            result = f"ReplicaSet/{name}"
            for ref in rs.metadata.owner_references or ():
                if ref.controller:
                    result = f"{ref.kind}/{ref.name}"
        except Exception as e:  # forbidden, gone, API away: the convention is right in practice
            log.debug("replicaset %s/%s: %s", namespace, name, e)
            return workload_by_convention(kind, name, labels)
        with self._lock:
            self._cache[key] = result
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
        return result


class PodIndex:
    """The pods of this node: by uid, by container id, by IP. Thread-safe and bounded."""

    def __init__(self, max_pods: int = 4096) -> None:
        self._lock = threading.Lock()
        self._by_uid: OrderedDict[str, PodInfo] = OrderedDict()
        self._by_container: dict[str, str] = {}
        self._by_ip: dict[str, str] = {}
        self._max = max_pods
        self._listeners: list[Callable[[], object]] = []
        self.generation = 0
        self.synced = False

    def add_listener(self, fn: Callable[[], object]) -> None:
        """Call ``fn()`` (without arguments, outside the lock) after every change."""
        self._listeners.append(fn)

    def _notify(self) -> None:
        for fn in list(self._listeners):
            try:
                fn()
            except Exception:
                log.exception("pod index listener failed")

    def _insert(self, pod: PodInfo) -> None:
        self._remove(pod.uid)
        self._by_uid[pod.uid] = pod
        for cid in pod.containers:
            self._by_container[cid] = pod.uid
        if not pod.host_network:  # a host-network pod's IP is the node's
            for ip in pod.pod_ips:
                self._by_ip[ip] = pod.uid
        while len(self._by_uid) > self._max:
            oldest = next(iter(self._by_uid))
            log.warning("pod index full (%d): dropping %s", self._max, oldest)
            self._remove(oldest)

    def _remove(self, uid: str) -> None:
        old = self._by_uid.pop(uid, None)
        if old is None:
            return
        for cid in old.containers:
            if self._by_container.get(cid) == uid:
                del self._by_container[cid]
        for ip in old.pod_ips:
            if self._by_ip.get(ip) == uid:
                del self._by_ip[ip]

    def replace(self, pods: Iterable[PodInfo]) -> None:
        """Replace the whole content (after a list)."""
        with self._lock:
            self._by_uid.clear()
            self._by_container.clear()
            self._by_ip.clear()
            for p in pods:
                self._insert(p)
            self.generation += 1
            self.synced = True
        self._notify()

    def upsert(self, pod: PodInfo) -> None:
        with self._lock:
            self._insert(pod)
            self.generation += 1
        self._notify()

    def delete(self, uid: str) -> None:
        with self._lock:
            self._remove(uid)
            self.generation += 1
        self._notify()

    def get(self, uid: str) -> PodInfo | None:
        with self._lock:
            return self._by_uid.get(uid)

    def by_container(self, container_id: str) -> PodInfo | None:
        with self._lock:
            uid = self._by_container.get(container_id)
            return self._by_uid.get(uid) if uid else None

    def by_ip(self, ip: str) -> PodInfo | None:
        with self._lock:
            uid = self._by_ip.get(ip)
            return self._by_uid.get(uid) if uid else None

    def pods(self) -> list[PodInfo]:
        with self._lock:
            return list(self._by_uid.values())

    def __len__(self) -> int:
        with self._lock:
            return len(self._by_uid)
