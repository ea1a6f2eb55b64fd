"""Which pods of this node nodetap captures, and why (or why not).

Nothing is captured until it is targeted. A pod is targeted by, in this order:

1. its own annotation or label ``nodetap.io/capture`` ("true" targets it, "false" opts it out
   whatever else says),
2. its namespace's annotation or label ``nodetap.io/capture``,
3. the config: ``namespaces`` (whole namespaces) and ``selectors`` (namespace + matchLabels),
4. ``mode: all`` (every pod but those of ``exclude_namespaces``).

Targeted pods become a set of cgroup v2 ids (the inode numbers of the pod's cgroup directory
and of every directory under it: the container scopes where its processes live), which the
capture loads into its in-kernel filter: an untargeted pod costs one map lookup per syscall
and nothing more. ``Targeting`` recomputes the set when pods come and go and on ``refresh()``
(containers' cgroups appear a moment after the pod event), and calls ``on_change(ids)`` when it
changes. ``status()`` explains every pod of the node for ``nodetap status``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import Gauge

from agent.enrich.cgroup import find_cgroup2_mount, pod_uid_from_path
from agent.enrich.pods import PodIndex, PodInfo
from nodetap.errors import NodetapError

log = logging.getLogger(__name__)

CAPTURE_KEY = "nodetap.io/capture"
# nodetap's own pods are never captured (the agent would record its own traffic to the
# forwarder, which would record more traffic...).
OWN_LABEL = ("app.kubernetes.io/part-of", "nodetap")

TARGETED_PODS = Gauge("nodetap_targeted_pods", "Pods of this node that are targeted for capture")
CAPTURED_CGROUPS = Gauge(
    "nodetap_captured_cgroups", "cgroup v2 ids in the in-kernel capture filter"
)

_TRUE = ("true", "yes", "1", "on", "enabled")
_FALSE = ("false", "no", "0", "off", "disabled")


@dataclass(frozen=True, slots=True)
class Selector:
    """Pods of ``namespace`` (any namespace when empty) whose labels include ``match_labels``."""

    namespace: str = ""
    match_labels: dict[str, str] = field(default_factory=dict)

    def matches(self, pod: PodInfo) -> bool:
        if self.namespace and pod.namespace != self.namespace:
            return False
        return all(pod.labels.get(k) == v for k, v in self.match_labels.items())

    def describe(self) -> str:
        parts = [f"namespace={self.namespace}"] if self.namespace else []
        parts += [f"{k}={v}" for k, v in sorted(self.match_labels.items())]
        return ",".join(parts) or "everything"


@dataclass(frozen=True, slots=True)
class TargetingConfig:
    """The ``targeting:`` section of the agent config."""

    mode: str = "opt-in"  # "opt-in": only what is targeted; "all": every pod
    key: str = CAPTURE_KEY
    namespaces: tuple[str, ...] = ()
    selectors: tuple[Selector, ...] = ()
    exclude_namespaces: tuple[str, ...] = ("kube-system",)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> TargetingConfig:
        """From the parsed YAML section; unknown keys and bad values are a NodetapError."""
        d = dict(d or {})
        known = {"mode", "key", "namespaces", "selectors", "exclude_namespaces"}
        unknown = set(d) - known
        if unknown:
            raise NodetapError(
                f"unknown targeting setting(s) {', '.join(sorted(unknown))}; "
                f"use {', '.join(sorted(known))}"
            )
        mode = str(d.get("mode", "opt-in"))
        if mode not in ("opt-in", "all"):
            raise NodetapError(f"targeting mode {mode!r} unknown; use opt-in or all")
        selectors = []
        for i, s in enumerate(d.get("selectors") or ()):
            if not isinstance(s, Mapping) or set(s) - {"namespace", "matchLabels"}:
                raise NodetapError(
                    f"targeting selector #{i + 1} must be a mapping with namespace and/or "
                    "matchLabels"
                )
            labels = s.get("matchLabels") or {}
            if not isinstance(labels, Mapping):
                raise NodetapError(f"targeting selector #{i + 1}: matchLabels must be a mapping")
            selectors.append(
                Selector(str(s.get("namespace") or ""), {str(k): str(v) for k, v in labels.items()})
            )
        return cls(
            mode=mode,
            key=str(d.get("key", CAPTURE_KEY)),
            namespaces=tuple(str(n) for n in d.get("namespaces") or ()),
            selectors=tuple(selectors),
            exclude_namespaces=tuple(
                str(n) for n in d.get("exclude_namespaces", ("kube-system",)) or ()
            ),
        )


@dataclass(frozen=True, slots=True)
class Decision:
    targeted: bool
    reason: str


def _flag(value: str | None) -> bool | None:
    if value is None:
        return None
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    return None


def decide(
    pod: PodInfo,
    config: TargetingConfig,
    namespace_meta: Mapping[str, str] | None = None,
) -> Decision:
    """Whether ``pod`` is targeted, and the one-line reason. ``namespace_meta`` holds the
    labels and annotations of the pod's namespace (when the agent watches namespaces)."""
    key = config.key
    if pod.labels.get(OWN_LABEL[0]) == OWN_LABEL[1]:
        return Decision(False, "nodetap's own pod")
    for where, meta in (("annotation", pod.annotations), ("label", pod.labels)):
        f = _flag(meta.get(key))
        if f is not None:
            return Decision(f, f"pod {where} {key}={meta[key]}")
    if namespace_meta is not None:
        f = _flag(namespace_meta.get(key))
        if f is not None:
            return Decision(f, f"namespace {pod.namespace} has {key}={namespace_meta[key]}")
    if pod.namespace in config.namespaces:
        return Decision(True, f"namespace {pod.namespace} listed in the config")
    for i, sel in enumerate(config.selectors):
        if sel.matches(pod):
            return Decision(True, f"config selector #{i + 1} ({sel.describe()})")
    if config.mode == "all":
        if pod.namespace in config.exclude_namespaces:
            return Decision(False, f"namespace {pod.namespace} excluded in the config")
        return Decision(True, "config mode all")
    return Decision(
        False,
        f"not targeted (no {key} annotation or label on the pod or its namespace, "
        "no config selector matches)",
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


def _walk_pod_cgroups(root: Path, max_depth: int = 8) -> Iterator[tuple[str, Path]]:
    """(pod uid, directory) for every pod cgroup directory and its descendants under root.
    Descends only into kubepods subtrees, so a node's other cgroups cost nothing."""
    stack: list[tuple[Path, str | None, int]] = [(root, None, 0)]
    while stack:
        path, uid, depth = stack.pop()
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
            if depth < max_depth and (child_uid is not None or "kube" in e.name):
                stack.append((Path(e.path), child_uid, depth + 1))


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
            for entry in self._status:
                if entry["uid"] == pod_uid:
                    entry["notes"] = dict(self._notes[pod_uid])

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


# --- wiring for the agent's command line -------------------------------------------------


def add_arguments(parser: Any) -> None:
    """Kubernetes flags of the agent: --targeting, --kubeconfig, --node, --cluster."""
    g = parser.add_argument_group("kubernetes (enrichment and targeting)")
    g.add_argument(
        "--targeting",
        metavar="FILE",
        help="YAML with a targeting: section (mode, namespaces, selectors); with it, only "
        "targeted pods of this node are captured (in-kernel cgroup filter)",
    )
    g.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help="kubeconfig (default: in-cluster, "
        "$KUBECONFIG, ~/.kube/config; none: host-only enrichment)",
    )
    g.add_argument(
        "--node",
        metavar="NAME",
        default="",
        help="this node's name (default $NODE_NAME, else the host name)",
    )
    g.add_argument(
        "--cluster",
        metavar="NAME",
        default="",
        help="cluster name for RRPair meta (default $NODETAP_CLUSTER)",
    )


def load_config(path: str | None) -> TargetingConfig:
    """The ``targeting:`` section of a YAML file (the whole file if it has no such key)."""
    if not path:
        return TargetingConfig()
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            loaded = yaml.safe_load(f) or {}
    except OSError as e:
        raise NodetapError(
            f"cannot read {path}: {e.strerror}; pass an existing --targeting"
        ) from None
    except yaml.YAMLError as e:
        raise NodetapError(f"{path} is not valid YAML ({e}); fix it") from None
    if not isinstance(loaded, Mapping):
        raise NodetapError(f"{path} must be a YAML mapping with a targeting: section")
    section = loaded.get("targeting", loaded)
    return TargetingConfig.from_dict(section)


class NodeContext:
    """The agent's Kubernetes side in one object: an ``Enricher`` (always; host-only off
    Kubernetes) and, with --targeting, a ``Targeting`` fed by the pod watch.

    Wiring in the capture::

        ctx = targeting.from_args(args)
        metrics = httpserve.serve(args.metrics_addr, ready=ctx.ready, status=ctx.status)
        ctx.attach(capture.set_cgroup_filter)   # targeted pods -> in-kernel filter, live
        info = ctx.enricher.enrich(pid)         # per new connection
        info.fill_meta(pair.meta, ctx.version)
        ...
        ctx.close()
    """

    def __init__(self, enricher: Any, targeting: Targeting | None, version: str) -> None:
        self.enricher = enricher
        self.targeting = targeting
        self.version = version
        self._namespace_watch: Any = None

    def attach(self, set_filter: Callable[[set[int]], None]) -> None:
        """Keep ``set_filter(ids)`` called with the targeted cgroup ids (now and on change)."""
        if self.targeting is None:
            return
        self.targeting._on_change = set_filter
        set_filter(self.targeting.cgroup_ids())

    def ready(self) -> bool:
        ns = self._namespace_watch
        return bool(self.enricher.ready()) and (ns is None or ns.synced.is_set())

    def status(self) -> dict[str, Any]:
        return status_document(
            self.targeting,
            node=self.enricher.node,
            cluster=self.enricher.cluster,
            agent_version=self.version,
            ready=self.ready(),
        )

    def close(self) -> None:
        if self.targeting is not None:
            self.targeting.close()
        if self._namespace_watch is not None:
            self._namespace_watch.stop()
        self.enricher.close()


def from_args(args: Any, *, rescan_seconds: float = 2.0) -> NodeContext:
    """Build the NodeContext from the flags of ``add_arguments`` (and the environment)."""
    from agent.enrich import Enricher, agent_version, load_api_client
    from agent.enrich.watch import ListWatcher

    config = load_config(getattr(args, "targeting", None))
    kubeconfig = getattr(args, "kubeconfig", None)
    enricher = Enricher.from_environment(
        node=getattr(args, "node", "") or "",
        cluster=getattr(args, "cluster", "") or "",
        kubeconfig=kubeconfig,
    )
    targeting = None
    ctx = NodeContext(enricher, None, agent_version())
    if getattr(args, "targeting", None):
        if not enricher.in_cluster or enricher.pods is None:
            enricher.close()
            raise NodetapError(
                "--targeting needs Kubernetes (in a pod, or a kubeconfig); off Kubernetes "
                "use --pid, --port or --cgroup"
            )
        namespaces = NamespaceIndex()
        api_client = load_api_client(kubeconfig)
        from kubernetes import client

        core = client.CoreV1Api(api_client)
        ctx._namespace_watch = ListWatcher(
            "namespaces", core.list_namespace, namespaces.replace, namespaces.event
        ).start()
        targeting = Targeting(enricher.pods, config, namespaces=namespaces)
        targeting.start(rescan_seconds)
        ctx.targeting = targeting
    return ctx
