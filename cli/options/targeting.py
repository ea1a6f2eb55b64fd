"""The agent's Kubernetes flags (--targeting, --kubeconfig, --node, --cluster) and the
NodeContext they give (agent/node_context.py)."""

from __future__ import annotations

import argparse
from typing import Any

from agent.node_context import NodeContext, open_node_context


def add_arguments(parser: argparse.ArgumentParser) -> None:
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
    from cli.options import selection

    selection.add_arguments(g)
    g.add_argument(
        "--cluster",
        metavar="NAME",
        default="",
        help="cluster name for RRPair meta (default $NODETAP_CLUSTER)",
    )


def from_args(args: Any, *, rescan_seconds: float = 2.0) -> NodeContext:
    """Build the NodeContext from the flags of ``add_arguments`` (and the environment)."""
    return open_node_context(
        getattr(args, "targeting", None),
        kubeconfig=getattr(args, "kubeconfig", None),
        node=getattr(args, "node", "") or "",
        cluster=getattr(args, "cluster", "") or "",
        rescan_seconds=rescan_seconds,
    )
