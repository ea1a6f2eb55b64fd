"""Names in the JetStream store: subjects, message ids, stream names. Pure functions.

Subjects are ``nodetap.rrpairs.<node>.<namespace>.<direction>`` so that a filter on one node,
one namespace or one direction runs in the NATS server (a consumer's filter subject); the rest
of a filter runs in the forwarder. Tokens are sanitized (NATS tokens cannot hold ``.``, ``*``,
``>`` or whitespace), so two names may share a token: the forwarder re-checks every RRPair.
"""

from __future__ import annotations

import re

from nodetap.v1 import forwarder_pb2 as fpb
from nodetap.v1 import rrpair_pb2 as pb

STREAM = "NODETAP_RRPAIRS"
PREFIX = "nodetap.rrpairs"
SNAP_STREAM_PREFIX = "NODETAP_SNAP_"
SNAP_PREFIX = "nodetap.snap"

_BAD = re.compile(r"[^A-Za-z0-9_\-:]")
_DIRECTIONS: dict[int, str] = {
    pb.INBOUND: "inbound",
    pb.OUTBOUND: "outbound",
    pb.NETWORK: "network",
}


def token(value: str) -> str:
    """One subject token for value: unsafe characters become '_', empty becomes '_'."""
    return _BAD.sub("_", value) or "_"


def direction_token(direction: int) -> str:
    return _DIRECTIONS.get(int(direction), "unspecified")


def subject(pair: pb.RRPair, prefix: str = PREFIX) -> str:
    m = pair.meta
    return f"{prefix}.{token(m.node)}.{token(m.namespace)}.{direction_token(pair.direction)}"


def filter_subject(flt: fpb.Filter, prefix: str = PREFIX) -> str:
    """The narrowest single filter subject for flt (one value: that token; else '*')."""

    def one(values: list[str]) -> str:
        return values[0] if len(values) == 1 else "*"

    node = one([token(v) for v in flt.nodes])
    ns = one([token(v) for v in flt.namespaces])
    direction = one([direction_token(d) for d in flt.directions])
    return f"{prefix}.{node}.{ns}.{direction}"


def msg_id(agent_id: str, seq: int, index: int) -> str:
    """Nats-Msg-Id of the index-th RRPair of an agent's batch: the same on every resend."""
    return f"{agent_id}/{seq}/{index}"


def snapshot_stream(snapshot_id: str) -> str:
    return SNAP_STREAM_PREFIX + token(snapshot_id).replace("-", "_")


def snapshot_prefix(snapshot_id: str) -> str:
    return f"{SNAP_PREFIX}.{token(snapshot_id)}"
