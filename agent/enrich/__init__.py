"""Enrichment: pid -> cgroup -> container -> pod, namespace, labels, container, workload.

``Enricher`` is the entry point (``Enricher.from_environment()`` in the agent): an
``Identity`` (nodetap/identity.py) per process. It works without a cluster (host-only
values) and never fails.
"""

from agent.enrich.enricher import Enricher, agent_version, load_api_client
from agent.enrich.peers import PeerIndex, PeerInfo
from agent.enrich.pods import OwnerResolver, PodIndex, PodInfo

__all__ = [
    "Enricher",
    "OwnerResolver",
    "PeerIndex",
    "PeerInfo",
    "PodIndex",
    "PodInfo",
    "agent_version",
    "load_api_client",
]
