"""The Python packet path, kept as the oracle of the differential test (test_core_path.py):
frames decoded (agent/packet/decode.py) and TCP reassembled (flows.py, reassembly.py) in
Python, the bytes fed to the core's record decoder (http_session.py). Production uses
agent/packet/pipeline.py, where all of this runs in the core.

(Formerly agent/packet/pipeline.py:) Frames in, exchanges out.

Shared by pcap import and live packet capture; the caller brings the frames (from a file
or a socket) and receives each exchange as a CapturedExchange through ``on_exchange``
(``.proto()`` for the RRPair message, ``.json_line()`` for its JSONL line). Python decodes
frames and reassembles TCP; the core (the syscall capture's decoder) parses HTTP/1.x,
HTTP/2 and gRPC. Exchanges come out when a batch of records is fed: call ``flush`` after
each burst of frames (live), ``finish`` at the end.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass

from agent.packet.decode import SUPPORTED_LINKTYPES, Malformed, NotTcp, decode
from agent.packet.flows import FlowTable
from agent.packet.http_session import CoreSessions, OnExchange
from agent.rrpairs import CapturedExchange

log = logging.getLogger(__name__)

# the core's counters in the summary (as core_NAME)
_CORE_COUNTERS = ("conns_h2", "conns_not_http", "parse_errors", "panics", "rrpairs_truncated")


@dataclass(slots=True)
class PacketStats:
    """Frame-level counters."""

    packets: int = 0
    bytes: int = 0
    tcp: int = 0
    not_tcp: int = 0
    malformed: int = 0
    unsupported_link: int = 0
    rrpairs: int = 0


class PyPacketPipeline:
    """Decodes frames, reassembles TCP, feeds the core, emits RRPairs.

    ``jsonl``: the receiver writes JSON lines only (the core then encodes no protobuf).
    """

    def __init__(
        self,
        on_exchange: OnExchange,
        source: str,
        ports: Collection[int] = (),
        max_body: int = 1 << 20,
        node: str = "",
        max_flows: int = 32768,
        idle_timeout_ns: int = 120 * 10**9,
        jsonl: bool = False,
        id_prefix: str | None = None,
    ) -> None:
        self.stats = PacketStats()
        self._emit_out = on_exchange
        self.sessions = CoreSessions(
            self._emit,
            source=source,
            max_body=max_body,
            node=node,
            jsonl=jsonl,
            id_prefix=id_prefix,
        )
        self.flows = FlowTable(
            self.sessions, ports=ports, max_flows=max_flows, idle_timeout_ns=idle_timeout_ns
        )
        self._bad_links: set[int] = set()

    def _emit(self, captured: CapturedExchange) -> None:
        self.stats.rrpairs += 1
        self._emit_out(captured)

    def frame(self, ts_ns: int, linktype: int, buf: bytes) -> None:
        """One captured frame."""
        stats = self.stats
        stats.packets += 1
        stats.bytes += len(buf)
        if linktype not in SUPPORTED_LINKTYPES:
            stats.unsupported_link += 1
            if linktype not in self._bad_links:
                self._bad_links.add(linktype)
                log.warning("link type %d is not supported; its packets are skipped", linktype)
            return
        try:
            seg = decode(linktype, buf)
        except NotTcp:
            stats.not_tcp += 1
            return
        except Malformed as e:
            stats.malformed += 1
            log.debug("malformed frame %d: %s", stats.packets, e)
            return
        stats.tcp += 1
        self.flows.segment(seg, ts_ns)

    def flush(self) -> None:
        """Decode the records batched so far; emit the exchanges they finish."""
        self.sessions.flush()

    def expire(self, now_ns: int) -> int:
        """Close flows idle since before the idle timeout; returns how many."""
        n = self.flows.expire(now_ns)
        self.sessions.flush()
        return n

    def finish(self) -> None:
        """End of input: flush and close every flow."""
        self.flows.close_all()
        self.sessions.flush()

    def summary(self) -> dict[str, int]:
        """All counters, frame- and flow-level, by name."""
        s = self.stats
        f = self.flows.snapshot_stats()
        core = self.sessions.counters()
        return {
            "packets": s.packets,
            "bytes": s.bytes,
            "tcp_packets": s.tcp,
            "not_tcp": s.not_tcp,
            "malformed": s.malformed,
            "unsupported_link": s.unsupported_link,
            "filtered": f.filtered,
            "flows": f.flows,
            "midstream_flows": f.midstream,
            "open_flows": f.open_flows,
            "evicted_idle": f.evicted_idle,
            "evicted_limit": f.evicted_limit,
            "rrpairs": s.rrpairs,
            "gaps": f.gaps,
            "gap_bytes": f.gap_bytes,
            "out_of_order": f.out_of_order,
            "duplicate_bytes": f.duplicate_bytes,
            "conflicts": f.conflicts,
            "late_segments": f.late_segments,
            **{f"core_{k}": core[k] for k in _CORE_COUNTERS},
        }
