"""The agent's Kubernetes side in one object (``NodeContext``): who each process is
(agent/enrich/) and, with a targeting file, which pods are captured (agent/targeting.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from agent.targeting import NamespaceIndex, Targeting, load_config, status_document
from nodetap.errors import ConfigError


class NodeContext:
    """The agent's Kubernetes side in one object: an ``Enricher`` (always; host-only off
    Kubernetes) and, with --targeting, a ``Targeting`` fed by the pod watch.

    Wiring in the capture (agent/pipeline.py)::

        ctx = open_node_context(targeting_file, kubeconfig=..., node=..., cluster=...)
        metrics = metrics_http.serve(addr, ready=ctx.ready, status=ctx.status)
        ctx.attach(capture.set_cgroup_filter)   # targeted pods -> in-kernel filter, live
        who = ctx.enricher.enrich(pid)          # per new connection: an Identity
        who.fill_meta(pair.meta)
        ...
        ctx.close()
    """

    def __init__(self, enricher: Any, targeting: Targeting | None, version: str) -> None:
        self.enricher = enricher
        self.targeting = targeting
        self.version = version
        self._namespace_watch: Any = None
        # the capture's TLS coverage rows (agent/tls/coverage.py: status_rows), once it runs
        self.tls_rows: Callable[[], list[dict[str, Any]]] | None = None

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
            extra={"tls": self.tls_rows()} if self.tls_rows is not None else None,
        )

    def close(self) -> None:
        if self.targeting is not None:
            self.targeting.close()
        if self._namespace_watch is not None:
            self._namespace_watch.stop()
        self.enricher.close()


def open_node_context(
    targeting_file: str | None = None,
    *,
    kubeconfig: str | None = None,
    node: str = "",
    cluster: str = "",
    rescan_seconds: float = 2.0,
) -> NodeContext:
    """The NodeContext of this node: enrichment from the environment (in a pod, a kubeconfig,
    or host-only) and, with a targeting file, the targeted pods (cli/options/targeting.py
    gives the flags)."""
    from agent.enrich import Enricher, agent_version, load_api_client
    from agent.enrich.watch import ListWatcher

    config = load_config(targeting_file)
    enricher = Enricher.from_environment(node=node, cluster=cluster, kubeconfig=kubeconfig)
    targeting = None
    ctx = NodeContext(enricher, None, agent_version())
    if targeting_file:
        if not enricher.in_cluster or enricher.pods is None:
            enricher.close()
            raise ConfigError(
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
