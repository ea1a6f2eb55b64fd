"""Who a connection belongs to: one record from enrichment to the RRPair.

The agent's enricher (agent/enrich/enricher.py) makes an ``Identity`` for a process; the
capture keeps one per connection (agent/rrpairs.py: ``ConnContext.who``); the RRPair's
``meta`` is filled from it (``fill_meta``, and the same fields in the direct JSON path of
agent/rrpairs.py). Empty strings where unknown (never None), as in the RRPair meta.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a process is: where it runs, and (on Kubernetes) which pod and workload."""

    node: str = ""
    cluster: str = ""
    pid: int = 0
    comm: str = ""
    cgroup_path: str = ""
    container_id: str = ""
    runtime: str = ""
    container: str = ""
    pod_uid: str = ""
    pod: str = ""
    namespace: str = ""
    workload: str = ""
    labels: dict[str, str] = field(default_factory=dict)

    def fill_meta(self, meta: Any) -> None:
        """Set the who-fields of an RRPair ``Meta`` message (nodetap.v1): node, pid, comm,
        container id, cluster and, for a pod, namespace, pod, labels, container, workload."""
        meta.node = self.node
        meta.pid = self.pid
        meta.comm = self.comm
        meta.container_id = self.container_id
        if self.pod or self.namespace:
            meta.namespace = self.namespace
            meta.pod = self.pod
            meta.labels.update(self.labels)
            meta.container = self.container
            meta.workload = self.workload
        if self.cluster:
            meta.cluster = self.cluster
