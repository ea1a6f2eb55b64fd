"""Frames in, exchanges out: frame decoding, the flow table, TCP reassembly and the
HTTP/1.x, HTTP/2 and gRPC decoder, all in the Rust core (nodetap_core.PacketDecoder).

Shared by pcap import and live packet capture; the caller brings the frames (from a file,
a socket or a TPACKET_V3 ring block) and receives each exchange as a CapturedExchange
through ``on_exchange`` (``.proto()`` for the RRPair message, ``.json_line()`` for its
JSONL line). Frames given one by one (``frame``) are batched here and handed to the core
a batch per call; a ring block (``block``) is one call. Exchanges come out when the core's
record batch is fed: call ``flush`` after each burst of frames (live), ``finish`` at the end.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

import nodetap_core

from agent.capture_core import CoreExchange
from agent.packet.http_session import OnExchange
from agent.packet.records import default_prefix

log = logging.getLogger(__name__)

# the core's counters in the summary (as core_NAME)
_CORE_COUNTERS = ("conns_h2", "conns_not_http", "parse_errors", "panics", "rrpairs_truncated")
# frames handed to the core per call when they come one by one
BATCH_FRAMES = 512
# the core's counters that are not in the summary (kept out: the summary keys are stable)
_SUMMARY_ONLY_CORE = ("ignored", "closed", "segments", "buffered_bytes", "packet_panics")


def _clamp(ts: int) -> int:
    return min(max(ts, 0), (1 << 64) - 1)


class PacketPipeline:
    """Decodes frames, reassembles TCP, decodes HTTP, emits RRPairs (all in the core).

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
        self._emit_out = on_exchange
        self._jsonl = jsonl
        self.core = nodetap_core.PacketDecoder(
            source,
            max_body,
            id_prefix or default_prefix(),
            node=node,
            ports=sorted(ports),
            max_flows=max_flows,
            idle_timeout_ns=idle_timeout_ns,
            protobuf=not jsonl,
            jsonl=jsonl,
        )
        self.rrpairs = 0
        self._frames: list[bytes] = []
        self._ts: list[int] = []
        self._linktype = -1
        self._warned: set[int] = set()

    def frame(self, ts_ns: int, linktype: int, buf: bytes) -> None:
        """One captured frame (batched; the core sees it at the next batch or flush)."""
        if linktype != self._linktype:
            self._feed()
            self._linktype = linktype
        self._frames.append(buf)
        self._ts.append(ts_ns)
        if len(self._frames) >= BATCH_FRAMES:
            self._feed()

    def frames(self, linktype: int, frames: list[bytes], ts_ns: list[int]) -> None:
        """A batch of frames of one link type."""
        self._feed()
        self._linktype = linktype
        self._frames, self._ts = frames, ts_ns
        self._feed()

    def block(self, linktype: int, block: bytes | memoryview) -> tuple[int, int]:
        """One retired TPACKET_V3 block; returns (frames it announced, frames walked)."""
        self._feed()
        return self.core.feed_block(linktype, block)

    def _feed(self) -> None:
        if self._frames:
            frames, ts = self._frames, self._ts
            self._frames, self._ts = [], []
            try:
                self.core.feed_frames(self._linktype, frames, ts)
            except OverflowError:  # a damaged file's times: below 0 or past 2**64 ns
                self.core.feed_frames(self._linktype, frames, [_clamp(t) for t in ts])

    def table_size(self) -> tuple[int, int]:
        """The flow table's size: (flows open, keys tracked)."""
        self._feed()
        return self.core.table_size()

    def _drain(self) -> None:
        core = self.core
        emit = self._emit_out
        if self._jsonl:
            lines = core.take_jsonl()
            self.rrpairs += len(lines)
            for line in lines:
                emit(CoreExchange(None, line))
        else:
            encoded = core.take_rrpairs()
            self.rrpairs += len(encoded)
            for b in encoded:
                emit(CoreExchange(b, None))

    def flush(self) -> None:
        """Decode what was fed so far; emit the exchanges it finishes."""
        self._feed()
        self.core.flush()
        self._drain()

    def expire(self, now_ns: int) -> int:
        """Close flows idle since before the idle timeout; returns how many."""
        self._feed()
        n = self.core.expire(now_ns)
        self._drain()
        return n

    def finish(self) -> None:
        """End of input: flush and close every flow."""
        self._feed()
        self.core.finish()
        self._drain()

    def summary(self) -> dict[str, int]:
        """All counters, frame- and flow-level, by name."""
        self._feed()
        for lt in self.core.bad_links():
            if lt not in self._warned:
                self._warned.add(lt)
                log.warning("link type %d is not supported; its packets are skipped", lt)
        c = self.core.counters()
        core = self.core.core_counters()
        out: dict[str, int] = {}
        for k, v in c.items():
            if k not in _SUMMARY_ONLY_CORE:
                out[k] = v
            if k == "evicted_limit":
                out["rrpairs"] = self.rrpairs
        out.update({f"core_{k}": core[k] for k in _CORE_COUNTERS})
        if c["packet_panics"]:
            out["packet_panics"] = c["packet_panics"]
        return out
