"""pid -> who it is: container, pod, namespace, labels, container name, workload.

``Enricher.enrich(pid)`` is what the capture calls for each new connection. It never fails:
without Kubernetes (or before the pod watch has caught up) the fields hold what the host
knows (pid, comm, container id if any). Per-process cgroup facts are cached (bounded LRU;
an entry older than ``revalidate_seconds`` is checked against the process start time, so a
reused pid is not mistaken for the old one);
pod facts are looked up in the live ``PodIndex`` each time, so they follow the watch.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Gauge

from agent.enrich.cgroup import ContainerRef, container_from_path, read_proc_cgroup
from agent.enrich.peers import PeerIndex, PeerInfo
from agent.enrich.pods import OwnerResolver, PodIndex, PodInfo
from agent.enrich.watch import ListWatcher
from nodetap.errors import ConfigError
from nodetap.identity import Identity

log = logging.getLogger(__name__)

LOOKUPS = Counter(
    "nodetap_enrich_lookups_total",
    "pid enrichments by result (pod: pod found; container: container without a known pod; "
    "host: host process; gone: process exited before lookup)",
    ["result"],
)
_LOOKUP = {r: LOOKUPS.labels(r) for r in ("pod", "container", "host", "gone")}
PODS = Gauge("nodetap_enrich_pods", "Pods of this node known to the agent")


def agent_version() -> str:
    """The installed nodetap version (RRPair meta.agent_version)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nodetap")
    except PackageNotFoundError:
        return "0.0.0+unknown"


@dataclass(slots=True)
class _ProcEntry:
    start_time: str
    comm: str
    cgroup_path: str
    ref: ContainerRef | None
    checked: float  # monotonic time of the last start-time check


def _read_first(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _start_time(stat: str) -> str:
    # /proc/PID/stat: "pid (comm) state ppid ..."; starttime is field 22 (the 20th after ')').
    rest = stat.rsplit(")", 1)[-1].split()
    return rest[19] if len(rest) > 19 else ""


class Enricher:
    """pid -> Identity; peer IP -> PeerInfo. Host-only when built without a pod index."""

    def __init__(
        self,
        pods: PodIndex | None = None,
        peers: PeerIndex | None = None,
        *,
        node: str = "",
        cluster: str = "",
        proc_root: str = "/proc",
        max_entries: int = 8192,
        revalidate_seconds: float = 2.0,
    ) -> None:
        self.pods = pods
        self.peers = peers if peers is not None else (PeerIndex(pods) if pods else None)
        self.node = node or socket.gethostname()
        self.cluster = cluster
        self._proc = proc_root
        self._cache: OrderedDict[int, _ProcEntry] = OrderedDict()
        self._max = max_entries
        self._revalidate = revalidate_seconds
        self._lock = threading.Lock()
        self._watchers: list[ListWatcher] = []

    # --- per process -------------------------------------------------------------------
    def _proc_entry(self, pid: int) -> _ProcEntry | None:
        now = time.monotonic()
        with self._lock:
            entry = self._cache.get(pid)
            if entry is not None and now - entry.checked < self._revalidate:
                self._cache.move_to_end(pid)
                return entry  # checked a moment ago: a pid is not reused that fast
        stat = _read_first(f"{self._proc}/{pid}/stat")
        if stat is None:
            with self._lock:
                self._cache.pop(pid, None)
            return None
        start = _start_time(stat)
        with self._lock:
            entry = self._cache.get(pid)
            if entry is not None and entry.start_time == start:
                entry.checked = now
                self._cache.move_to_end(pid)
                return entry
        cgroups = read_proc_cgroup(pid, self._proc)
        path = (cgroups.best_path() if cgroups else None) or ""
        comm = (_read_first(f"{self._proc}/{pid}/comm") or "").strip()
        if not comm:
            comm = stat.split("(", 1)[-1].rsplit(")", 1)[0]
        entry = _ProcEntry(start, comm, path, container_from_path(path), now)
        with self._lock:
            self._cache[pid] = entry
            while len(self._cache) > self._max:
                self._cache.popitem(last=False)
        return entry

    def lookup_pod(self, ref: ContainerRef | None) -> PodInfo | None:
        if ref is None or self.pods is None:
            return None
        pod = self.pods.by_container(ref.container_id)
        if pod is None and ref.pod_uid:
            pod = self.pods.get(ref.pod_uid)
        return pod

    def enrich(self, pid: int) -> Identity:
        """Never raises: unknown parts are empty strings."""
        try:
            entry = self._proc_entry(pid)
        except Exception as e:  # a /proc oddity must not break the capture
            log.debug("enrich %d: %s", pid, e)
            entry = None
        if entry is None:
            _LOOKUP["gone"].inc()
            return Identity(pid=pid, node=self.node, cluster=self.cluster)
        ref = entry.ref
        pod = self.lookup_pod(ref)
        if pod is None:
            _LOOKUP["container" if ref else "host"].inc()
            return Identity(
                pid=pid,
                comm=entry.comm,
                node=self.node,
                cluster=self.cluster,
                cgroup_path=entry.cgroup_path,
                container_id=ref.container_id if ref else "",
                runtime=ref.runtime if ref else "",
                pod_uid=(ref.pod_uid or "") if ref else "",
            )
        _LOOKUP["pod"].inc()
        assert ref is not None
        return Identity(
            pid=pid,
            comm=entry.comm,
            node=self.node,
            cluster=self.cluster,
            cgroup_path=entry.cgroup_path,
            container_id=ref.container_id,
            runtime=ref.runtime,
            pod_uid=pod.uid,
            pod=pod.name,
            namespace=pod.namespace,
            labels=dict(pod.labels),
            container=pod.container_of(ref.container_id),
            workload=pod.workload,
        )

    def peer(self, ip: str) -> PeerInfo | None:
        """The pod or Service behind a peer IP, when known."""
        return self.peers.lookup(ip) if self.peers is not None else None

    def forget(self, pid: int) -> None:
        """Drop a process from the cache (the capture saw it exit)."""
        with self._lock:
            self._cache.pop(pid, None)

    def cache_size(self) -> int:
        with self._lock:
            return len(self._cache)

    # --- life cycle with a cluster ------------------------------------------------------
    def ready(self) -> bool:
        """True when host-only, or when the pod list has been read once."""
        return all(w.synced.is_set() for w in self._watchers)

    @property
    def in_cluster(self) -> bool:
        return bool(self._watchers)

    def start_watches(
        self,
        api_client: Any,
        *,
        resync_seconds: float = 300.0,
        peers: bool = True,
    ) -> None:
        """Watch this node's pods (and, with ``peers``, Services, EndpointSlices and Nodes,
        to name peers)."""
        from kubernetes import client

        core = client.CoreV1Api(api_client)
        apps = client.AppsV1Api(api_client)
        if self.pods is None:
            self.pods = PodIndex()
        if self.peers is None:
            self.peers = PeerIndex(self.pods)
        index = self.pods
        resolver = OwnerResolver(apps)

        def pods_replace(items: list[Any]) -> None:
            index.replace(PodInfo.from_model(p, resolver) for p in items)
            PODS.set(len(index))

        def pod_event(typ: str, obj: Any) -> None:
            if typ == "DELETED":
                index.delete(obj.metadata.uid)
            else:
                index.upsert(PodInfo.from_model(obj, resolver))
            PODS.set(len(index))

        self._watchers.append(
            ListWatcher(
                "pods",
                core.list_pod_for_all_namespaces,
                pods_replace,
                pod_event,
                list_kwargs={"field_selector": f"spec.nodeName={self.node}"},
                resync_seconds=resync_seconds,
            )
        )
        if peers:
            pi = self.peers
            self._watchers.append(
                ListWatcher(
                    "services",
                    core.list_service_for_all_namespaces,
                    pi.services_replace,
                    lambda t, o: pi.service_delete(o) if t == "DELETED" else pi.service_upsert(o),
                    resync_seconds=resync_seconds,
                )
            )
            self._watchers.append(
                ListWatcher(
                    "nodes",
                    core.list_node,
                    pi.nodes_replace,
                    lambda t, o: pi.node_delete(o) if t == "DELETED" else pi.node_upsert(o),
                    resync_seconds=resync_seconds,
                )
            )
            self._watchers.append(
                ListWatcher(
                    "endpointslices",
                    client.DiscoveryV1Api(api_client).list_endpoint_slice_for_all_namespaces,
                    pi.slices_replace,
                    lambda t, o: pi.slice_delete(o) if t == "DELETED" else pi.slice_upsert(o),
                    resync_seconds=resync_seconds,
                )
            )
        for w in self._watchers:
            w.start()

    def close(self) -> None:
        for w in self._watchers:
            w.stop()

    @classmethod
    def from_environment(
        cls,
        *,
        node: str = "",
        cluster: str = "",
        kubeconfig: str | None = None,
        resync_seconds: float = 300.0,
        peers: bool = True,
    ) -> Enricher:
        """In a pod (service account) or with a kubeconfig: watch the node's pods.
        Elsewhere: host-only. The node name comes from ``node``, $NODE_NAME (the DaemonSet
        sets it from the downward API), or the host name."""
        node = node or os.environ.get("NODE_NAME", "") or socket.gethostname()
        cluster = cluster or os.environ.get("NODETAP_CLUSTER", "")
        api_client = load_api_client(kubeconfig)
        enricher = cls(node=node, cluster=cluster)
        if api_client is None:
            log.info("no Kubernetes configuration: host-only enrichment")
            return enricher
        enricher.start_watches(api_client, resync_seconds=resync_seconds, peers=peers)
        return enricher


def load_api_client(kubeconfig: str | None = None) -> Any | None:
    """An ApiClient from the in-cluster service account, ``kubeconfig``, $KUBECONFIG or
    ~/.kube/config, in that order; None when there is none (plain host)."""
    from kubernetes import client
    from kubernetes import config as _config

    config: Any = _config  # untyped module

    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        try:
            cfg = client.Configuration()
            config.load_incluster_config(client_configuration=cfg)
            return client.ApiClient(cfg)
        except config.ConfigException as e:
            raise ConfigError(
                f"in-cluster Kubernetes configuration unusable: {e}; "
                "check the agent's service account"
            ) from None
    path = kubeconfig or os.environ.get("KUBECONFIG") or str(Path.home() / ".kube" / "config")
    if not Path(path).exists():
        if kubeconfig:
            raise ConfigError(f"kubeconfig {kubeconfig} not found; pass an existing --kubeconfig")
        return None
    try:
        cfg = client.Configuration()
        config.load_kube_config(config_file=path, client_configuration=cfg)
        return client.ApiClient(cfg)
    except Exception as e:
        raise ConfigError(f"kubeconfig {path} unusable: {e}; fix it or pass --kubeconfig") from None
