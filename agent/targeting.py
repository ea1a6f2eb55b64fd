"""The targeted pods of this node as cgroup v2 ids, kept up to date, and why each pod is (not)
captured.

Which pods are targeted is decided by agent/targeting_policy.py. Targeted pods become a set
of cgroup v2 ids (the inode numbers of the pod's cgroup directory and of every directory
under it: the container scopes where its processes live), which the capture loads into its
in-kernel filter: an untargeted pod costs one map lookup per syscall and nothing more.
``Targeting`` recomputes the set when pods come and go and on ``refresh()`` (containers'
cgroups appear a moment after the pod event), and calls ``on_change(ids)`` when it changes.
``status()`` explains every pod of the node for ``nodetap status``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from prometheus_client import Gauge

from agent.enrich.cgroup import find_cgroup2_mount, pod_uid_from_path
from agent.enrich.pods import PodIndex
from agent.targeting_policy import (
    CAPTURE_KEY,
    OWN_LABEL,
    Decision,
    Selector,
    TargetingConfig,
    decide,
    load_config,
)

log = logging.getLogger(__name__)

# the rules, for those who read them here (cli/commands/status.py, the tests)
__all__ = [
    "CAPTURE_KEY",
    "OWN_LABEL",
    "Decision",
    "NamespaceIndex",
    "Selector",
    "Targeting",
    "TargetingConfig",
    "decide",
    "load_config",
    "status_document",
]

TARGETED_PODS = Gauge("nodetap_targeted_pods", "Pods of this node that are targeted for capture")
CAPTURED_CGROUPS = Gauge(
    "nodetap_captured_cgroups", "cgroup v2 ids in the in-kernel capture filter"
)


class NamespaceIndex:
    """Labels and annotations of namespaces (merged), fed by a namespace list/watch."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._meta: dict[str, dict[str, str]] = {}
        self._listeners: list[Callable[[], object]] = []

    def add_listener(self, fn: Callable[[], object]) -> None:
        self._listeners.append(fn)

    def _notify(self) -> None:
        for fn in list(self._listeners):
            fn()

    @staticmethod
    def _merged(ns: Any) -> dict[str, str]:
        return {**(ns.metadata.labels or {}), **(ns.metadata.annotations or {})}

    def replace(self, items: list[Any]) -> None:
        with self._lock:
            self._meta = {ns.metadata.name: self._merged(ns) for ns in items}
        self._notify()

    def event(self, typ: str, ns: Any) -> None:
        with self._lock:
            if typ == "DELETED":
                self._meta.pop(ns.metadata.name, None)
            else:
                self._meta[ns.metadata.name] = self._merged(ns)
        self._notify()

    def get(self, name: str) -> dict[str, str] | None:
        with self._lock:
            return self._meta.get(name)


def _holds_kubepods(path: str) -> bool:
    """Whether a directory is a kubelet's cgroup root (--cgroup-root /NAME, cgroupfs or
    systemd driver): it holds kubepods or kubepods.slice."""
    return any(os.path.isdir(os.path.join(path, k)) for k in ("kubepods", "kubepods.slice"))


def _walk_pod_cgroups(root: Path, max_depth: int = 8) -> Iterator[tuple[str, Path]]:
    """(pod uid, directory) for every pod cgroup directory and its descendants under root.
    Descends only into kubepods subtrees (a directory named kube*, or one holding kubepods:
    a kubelet's --cgroup-root of another name), and everywhere inside them (the cgroupfs
    driver's QoS levels are plain "besteffort", "burstable"), so a node's other cgroups cost
    nothing."""
    stack: list[tuple[Path, str | None, int, bool]] = [(root, None, 0, False)]
    while stack:
        path, uid, depth, inside = stack.pop()
        try:
            entries = list(os.scandir(path))
        except OSError:
            continue
        for e in entries:
            if not e.is_dir(follow_symlinks=False):
                continue
            child_uid = uid or pod_uid_from_path("/kubepods/" + e.name)
            if child_uid is not None:
                yield child_uid, Path(e.path)
            child_inside = inside or "kube" in e.name or _holds_kubepods(e.path)
            if depth < max_depth and (child_uid is not None or child_inside):
                stack.append((Path(e.path), child_uid, depth + 1, child_inside))


class Targeting:
    """The targeted pods of this node as cgroup v2 ids, kept up to date."""

    def __init__(
        self,
        pods: PodIndex,
        config: TargetingConfig | None = None,
        *,
        cgroup_root: Path | None = None,
        namespaces: NamespaceIndex | None = None,
        on_change: Callable[[set[int]], None] | None = None,
    ) -> None:
        self.pods = pods
        self.config = config or TargetingConfig()
        self.cgroup_root = cgroup_root if cgroup_root is not None else find_cgroup2_mount()
        self.namespaces = namespaces
        self._on_change = on_change
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()  # one recomputation at a time, in order
        self._ids: set[int] = set()
        self._status: list[dict[str, Any]] = []
        self._notes: dict[str, dict[str, str]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        pods.add_listener(self.refresh)
        if namespaces is not None:
            namespaces.add_listener(self.refresh)
        self.refresh()

    # --- from the capture -------------------------------------------------------------
    def note(self, pod_uid: str, topic: str, message: str) -> None:
        """Record what the capture saw for a pod, shown in the status, e.g.
        ``note(uid, "tls", "TLS library not hooked: statically linked Go binary")`` or
        ``note(uid, "protocol", "protocol not recognised on :5432")``."""
        with self._lock:
            self._notes.setdefault(pod_uid, {})[topic] = message
            self._show_notes(pod_uid)

    def forget(self, pod_uid: str, topic: str) -> None:
        """Remove a note (its process is gone); a pod left with none drops its entry."""
        with self._lock:
            notes = self._notes.get(pod_uid)
            if notes is None or notes.pop(topic, None) is None:
                return
            if not notes:
                del self._notes[pod_uid]
            self._show_notes(pod_uid)

    def _show_notes(self, pod_uid: str) -> None:
        """The pod's notes into its status entry (under the lock)."""
        for entry in self._status:
            if entry["uid"] == pod_uid:
                entry["notes"] = dict(self._notes.get(pod_uid, {}))

    # --- computing ----------------------------------------------------------------------
    def _scan_cgroups(self) -> dict[str, list[tuple[str, int]]]:
        found: dict[str, list[tuple[str, int]]] = {}
        if self.cgroup_root is None:
            return found
        for uid, path in _walk_pod_cgroups(self.cgroup_root):
            try:
                ino = os.stat(path).st_ino
            except OSError:
                continue  # removed while we looked
            rel = "/" + str(path.relative_to(self.cgroup_root))
            found.setdefault(uid, []).append((rel, ino))
        return found

    def refresh(self) -> bool:
        """Recompute; returns True (and calls on_change) when the id set changed."""
        with self._refresh_lock:
            return self._refresh()

    def _refresh(self) -> bool:
        cgroups = self._scan_cgroups()
        ids: set[int] = set()
        status: list[dict[str, Any]] = []
        targeted = 0
        for pod in sorted(self.pods.pods(), key=lambda p: (p.namespace, p.name)):
            ns_meta = self.namespaces.get(pod.namespace) if self.namespaces else None
            d = decide(pod, self.config, ns_meta)
            dirs = cgroups.get(pod.uid, [])
            captured = False
            reason = d.reason
            if d.targeted:
                targeted += 1
                if self.cgroup_root is None:
                    reason = f"{d.reason}; but cgroup v2 is not mounted: no in-kernel filter"
                elif not dirs:
                    reason = f"{d.reason}; but no cgroup on this node yet (containers starting?)"
                else:
                    captured = True
                    ids.update(ino for _, ino in dirs)
            with self._lock:
                notes = dict(self._notes.get(pod.uid, {}))
            status.append(
                {
                    "namespace": pod.namespace,
                    "pod": pod.name,
                    "uid": pod.uid,
                    "workload": pod.workload,
                    "phase": pod.phase,
                    "targeted": d.targeted,
                    "captured": captured,
                    "reason": reason,
                    "cgroups": [{"path": p, "id": i} for p, i in sorted(dirs)],
                    "notes": notes,
                }
            )
        with self._lock:
            changed = ids != self._ids
            self._ids = ids
            self._status = status
            known = {p["uid"] for p in status}
            for uid in list(self._notes):
                if uid not in known:
                    del self._notes[uid]
        TARGETED_PODS.set(targeted)
        CAPTURED_CGROUPS.set(len(ids))
        if changed:
            log.info("capture filter: %d cgroups of %d targeted pods", len(ids), targeted)
            if self._on_change is not None:
                self._on_change(set(ids))
        return changed

    def cgroup_ids(self) -> set[int]:
        with self._lock:
            return set(self._ids)

    def status(self) -> list[dict[str, Any]]:
        """One entry per pod of the node: targeted, captured, reason, cgroups, notes."""
        with self._lock:
            return [dict(e) for e in self._status]

    def pod_for_cgroup(self, cgroup_id: int) -> str | None:
        """The uid of the pod a cgroup id belongs to, if it is captured."""
        with self._lock:
            for e in self._status:
                if any(c["id"] == cgroup_id for c in e["cgroups"]):
                    return str(e["uid"])
        return None

    # --- periodic rescan -------------------------------------------------------------
    def start(self, interval: float = 2.0) -> Targeting:
        def loop() -> None:
            while not self._stop.wait(interval):
                try:
                    self.refresh()
                except Exception:
                    log.exception("targeting refresh failed")

        self.refresh()
        self._thread = threading.Thread(target=loop, name="nodetap-targeting", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)


def status_document(
    targeting: Targeting | None,
    *,
    node: str,
    cluster: str = "",
    agent_version: str = "",
    ready: bool = True,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The agent's /status JSON, which ``nodetap status`` prints."""
    pods = targeting.status() if targeting is not None else []
    doc: dict[str, Any] = {
        "node": node,
        "cluster": cluster,
        "agent_version": agent_version,
        "ready": ready,
        "targeting": {
            "mode": targeting.config.mode if targeting else "off",
            "cgroup_root": str(targeting.cgroup_root)
            if targeting and targeting.cgroup_root
            else "",
            "captured_cgroups": len(targeting.cgroup_ids()) if targeting else 0,
        },
        "pods": pods,
    }
    if extra:
        doc.update(extra)
    return doc
