"""The context of a connection's RRPairs: its addresses and direction (agent/connections.py)
and who its process is (the capture's enrichment, ``CaptureConfig.enrich``), built once per
connection."""

from __future__ import annotations

import dataclasses
import logging

from agent.capture_config import CaptureConfig
from agent.connections import Connection
from agent.rrpairs import ConnContext

log = logging.getLogger(__name__)


def connection_context(conn: Connection, cfg: CaptureConfig) -> ConnContext:
    """The ConnContext of ``conn`` (kept on it): never fails, enrichment errors included."""
    if conn.ctx is not None:
        return conn.ctx
    ctx = conn.context(cfg.node)
    ctx.agent_version = cfg.agent_version
    if cfg.enrich is not None:
        try:
            info = cfg.enrich(conn.tgid)
        except Exception:  # enrichment must never cost a capture
            log.debug("enrichment of pid %d failed", conn.tgid, exc_info=True)
        else:  # who the process is; pid and comm as the programs saw them
            ctx.who = dataclasses.replace(
                info, node=info.node or ctx.who.node, pid=ctx.who.pid, comm=ctx.who.comm
            )
    return ctx
