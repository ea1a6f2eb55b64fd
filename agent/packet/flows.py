"""The flow table: TCP segments in, per-connection ordered bytes out to a session.

Sans-IO. Each TCP connection gets a Flow with two TcpStreams (client to server and back)
and a session (the protocol side, for example HTTP/1.x) that receives ordered bytes and
gaps. Roles come from the handshake (the SYN's sender is the client); a connection picked
up mid-stream gets its roles from the server ports, then the first payload, then the lower
port. Memory is bounded: at most ``max_flows`` flows and ``max_buffered`` bytes waiting
for earlier bytes across all flows; past either limit, and after ``idle_timeout_ns`` of
capture time without a packet, the least recently active flows are flushed and closed.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import socket
from collections import OrderedDict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Protocol

from agent.packet.decode import ACK, FIN, RST, SYN, Segment
from agent.packet.reassembly import Chunk, StreamEvent, TcpStream

log = logging.getLogger(__name__)

FlowKey = tuple[bytes, int, bytes, int]

# how long and how many ended flows are remembered (Linux keeps TIME_WAIT for 60 s)
ENDED_KEEP_NS = 60 * 10**9
MAX_ENDED = 16384

_REQUEST_STARTS = (
    b"GET ", b"POST ", b"PUT ", b"HEAD ", b"DELETE ", b"PATCH ", b"OPTIONS ", b"CONNECT ",
    b"TRACE ",
)  # fmt: skip


class Session(Protocol):
    """What receives a connection's ordered bytes (the protocol side)."""

    def data(self, from_client: bool, data: bytes, ts_ns: int) -> None: ...
    def gap(self, from_client: bool, size: int, ts_ns: int) -> None: ...
    def close(self, ts_ns: int) -> None: ...


@dataclass(slots=True)
class FlowInfo:
    """Who talks to whom on a flow."""

    flow_id: int
    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    midstream: bool  # the capture missed the start of the connection


SessionFactory = Callable[[FlowInfo], Session]


@dataclass(slots=True)
class FlowStats:
    """Counters of a flow table."""

    segments: int = 0  # TCP segments offered
    filtered: int = 0  # not on a selected port
    ignored: int = 0  # no flow and nothing to start one (stray ACK, FIN, RST)
    flows: int = 0  # flows opened
    midstream: int = 0  # of which picked up without a handshake
    closed: int = 0  # ended by FIN or RST
    evicted_idle: int = 0
    evicted_limit: int = 0  # closed early to keep within max_flows / max_buffered
    gaps: int = 0
    gap_bytes: int = 0
    out_of_order: int = 0
    duplicate_bytes: int = 0
    conflicts: int = 0
    late_segments: int = 0  # of a flow already ended by FIN or RST (a slow retransmission)
    open_flows: int = 0
    buffered_bytes: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class Flow:
    """One TCP connection. Its session is made when the first payload byte arrives, so
    connections that never carry data (scans, SYN floods) cost little."""

    __slots__ = ("c2s", "client_key", "flow_id", "last_ts", "midstream", "s2c", "session")

    def __init__(
        self, flow_id: int, client_key: FlowKey, midstream: bool, ts_ns: int, max_buffer: int
    ) -> None:
        self.flow_id = flow_id
        self.client_key = client_key
        self.midstream = midstream
        self.session: Session | None = None
        self.c2s = TcpStream(max_buffer)
        self.s2c = TcpStream(max_buffer)
        self.last_ts = ts_ns

    def info(self) -> FlowInfo:
        cip, cport, sip, sport = self.client_key
        return FlowInfo(self.flow_id, _ip_text(cip), cport, _ip_text(sip), sport, self.midstream)


_V4_MAPPED = b"\0" * 10 + b"\xff\xff"


def _ip_text(addr: bytes) -> str:
    if len(addr) == 4:
        return socket.inet_ntop(socket.AF_INET, addr)
    if addr[:12] == _V4_MAPPED:
        return socket.inet_ntop(socket.AF_INET, addr[12:])
    return socket.inet_ntop(socket.AF_INET6, addr)


class FlowTable:
    """Routes segments to flows, reassembles both directions, feeds sessions."""

    def __init__(
        self,
        session_factory: SessionFactory,
        ports: Collection[int] = (),
        idle_timeout_ns: int = 120 * 10**9,
        max_flows: int = 32768,
        max_buffered: int = 256 << 20,
        max_stream_buffer: int = 4 << 20,
    ) -> None:
        self._factory = session_factory
        self._ports = frozenset(ports)
        self._idle = idle_timeout_ns
        self._max_flows = max_flows
        self._max_buffered = max_buffered
        self._max_stream_buffer = max_stream_buffer
        self._by_key: dict[FlowKey, Flow] = {}
        self._lru: OrderedDict[int, Flow] = OrderedDict()
        # flows ended by FIN or RST lately, by both keys -> when (TIME_WAIT's job): a copy
        # of one of their segments that comes late is not the start of a new connection
        self._ended: OrderedDict[FlowKey, int] = OrderedDict()
        self._ids = itertools.count(1)
        self._buffered = 0
        self._now = 0
        self.stats = FlowStats()

    # -- input -----------------------------------------------------------------------------

    def segment(self, seg: Segment, ts_ns: int) -> None:
        """One decoded TCP segment, in capture order."""
        stats = self.stats
        stats.segments += 1
        ports = self._ports
        if ports and seg.sport not in ports and seg.dport not in ports:
            stats.filtered += 1
            return
        if ts_ns > self._now:
            self._now = ts_ns
        key = (seg.src, seg.sport, seg.dst, seg.dport)
        flow = self._by_key.get(key)
        flags = seg.flags
        if flow is not None and flags & SYN and not flags & ACK and key == flow.client_key:
            isn_next = (seg.seq + 1) & 0xFFFFFFFF
            if flow.c2s.offset_of(isn_next) != 0 or flow.midstream:
                self._close(flow, ts_ns)  # a new connection on the same ports
                stats.closed += 1
                flow = None
        if flow is None and key in self._ended:
            if flags & SYN and not flags & ACK:  # the ports used again: a new connection
                self._forget_ended(key)
            else:
                stats.late_segments += 1
                stats.duplicate_bytes += len(seg.payload)
                return
        if flow is None:
            flow = self._open(seg, key, ts_ns)
            if flow is None:
                stats.ignored += 1
                return
        else:
            self._lru.move_to_end(flow.flow_id)
        flow.last_ts = ts_ns
        from_client = key == flow.client_key
        this, other = (flow.c2s, flow.s2c) if from_client else (flow.s2c, flow.c2s)
        before = this.pending_bytes + other.pending_bytes
        seq = seg.seq
        if flags & SYN:
            seq = (seq + 1) & 0xFFFFFFFF
            if not this.started:
                this.start(seq)
        if flags & ACK:
            if other.started:
                events = other.acked(seg.ack, ts_ns)
                if events:
                    self._feed(flow, not from_client, events)
            else:
                other.start(seg.ack)
        payload = seg.payload
        if payload:
            events = this.segment(seq, payload, ts_ns)
            if events:
                self._feed(flow, from_client, events)
        if seg.missing:
            events = this.lost(seq, len(payload), seg.missing, ts_ns)
            if events:
                self._feed(flow, from_client, events)
        if flags & FIN:
            this.fin(seq, len(payload) + seg.missing)
        self._buffered += this.pending_bytes + other.pending_bytes - before
        if flags & RST or (
            this.fin_offset is not None
            and other.fin_offset is not None
            and this.next_offset >= this.fin_offset
            and other.next_offset >= other.fin_offset
        ):
            self._close(flow, ts_ns)
            stats.closed += 1
            self._remember_ended(flow.client_key, ts_ns)
        if stats.segments & 255 == 0:
            self.expire(self._now)
        if self._buffered > self._max_buffered:
            self._shed()

    def _remember_ended(self, key: FlowKey, ts_ns: int) -> None:
        ended = self._ended
        for k in (key, (key[2], key[3], key[0], key[1])):
            ended[k] = ts_ns
            ended.move_to_end(k)
        limit = ts_ns - ENDED_KEEP_NS
        while ended and (len(ended) > 2 * MAX_ENDED or next(iter(ended.values())) < limit):
            ended.popitem(last=False)

    def _forget_ended(self, key: FlowKey) -> None:
        self._ended.pop(key, None)
        self._ended.pop((key[2], key[3], key[0], key[1]), None)

    def expire(self, now_ns: int) -> int:
        """Close flows idle for longer than the idle timeout; returns how many."""
        n = 0
        limit = now_ns - self._idle
        lru = self._lru
        while lru:
            flow = next(iter(lru.values()))
            if flow.last_ts >= limit:
                break
            self._close(flow, flow.last_ts)
            n += 1
        self.stats.evicted_idle += n
        return n

    def close_all(self) -> None:
        """End of capture: flush and close every flow."""
        while self._lru:
            flow = next(iter(self._lru.values()))
            self._close(flow, flow.last_ts)

    @property
    def open_flows(self) -> int:
        return len(self._lru)

    def snapshot_stats(self) -> FlowStats:
        """The counters, with the per-stream ones of flows still open added in."""
        s = self.stats
        out = dataclasses.replace(s, extra=dict(s.extra))
        for flow in self._lru.values():
            for st in (flow.c2s.stats, flow.s2c.stats):
                out.gaps += st.gaps
                out.gap_bytes += st.gap_bytes
                out.out_of_order += st.out_of_order
                out.duplicate_bytes += st.duplicate_bytes
                out.conflicts += st.conflicts
        out.open_flows = len(self._lru)
        out.buffered_bytes = self._buffered
        return out

    # -- internals ---------------------------------------------------------------------------

    def _open(self, seg: Segment, key: FlowKey, ts_ns: int) -> Flow | None:
        flags = seg.flags
        if flags & RST:
            return None
        if flags & SYN:
            client_is_src = not flags & ACK
            midstream = False
        elif seg.payload:
            client_is_src = self._guess_client_is_src(seg)
            midstream = True
        else:
            return None
        if len(self._lru) >= self._max_flows:
            oldest = next(iter(self._lru.values()))
            self._close(oldest, oldest.last_ts)
            self.stats.evicted_limit += 1
        rkey = (seg.dst, seg.dport, seg.src, seg.sport)
        ckey = key if client_is_src else rkey
        flow = Flow(next(self._ids), ckey, midstream, ts_ns, self._max_stream_buffer)
        self._by_key[key] = flow
        self._by_key[rkey] = flow
        self._lru[flow.flow_id] = flow
        self.stats.flows += 1
        if midstream:
            self.stats.midstream += 1
        return flow

    def _guess_client_is_src(self, seg: Segment) -> bool:
        ports = self._ports
        if ports:
            if seg.dport in ports and seg.sport not in ports:
                return True
            if seg.sport in ports and seg.dport not in ports:
                return False
        head = seg.payload[:8]
        if head.startswith(b"HTTP/"):
            return False
        if head.startswith(_REQUEST_STARTS):
            return True
        return seg.dport < seg.sport

    def _feed(self, flow: Flow, from_client: bool, events: list[StreamEvent]) -> None:
        session = flow.session
        if session is None:
            session = flow.session = self._factory(flow.info())
        for ev in events:
            if type(ev) is Chunk:
                session.data(from_client, ev.data, ev.ts_ns)
            else:
                session.gap(from_client, ev.size, ev.ts_ns)  # type: ignore[union-attr]

    def _close(self, flow: Flow, ts_ns: int) -> None:
        """Flush both directions (holes become gaps), close the session, forget the flow."""
        before = flow.c2s.pending_bytes + flow.s2c.pending_bytes
        # Deliver the client's bytes first: requests precede the responses they cause.
        for stream, from_client in ((flow.c2s, True), (flow.s2c, False)):
            events = stream.flush(ts_ns)
            if events:
                self._feed(flow, from_client, events)
        self._buffered -= before
        try:
            if flow.session is not None:
                flow.session.close(ts_ns)
        finally:
            stats = self.stats
            for st in (flow.c2s.stats, flow.s2c.stats):
                stats.gaps += st.gaps
                stats.gap_bytes += st.gap_bytes
                stats.out_of_order += st.out_of_order
                stats.duplicate_bytes += st.duplicate_bytes
                stats.conflicts += st.conflicts
            key = flow.client_key
            self._by_key.pop(key, None)
            self._by_key.pop((key[2], key[3], key[0], key[1]), None)
            self._lru.pop(flow.flow_id, None)

    def _shed(self) -> None:
        """Too many bytes wait for missing ones: close the least recently active flows."""
        while self._buffered > self._max_buffered // 2 and self._lru:
            flow = next(iter(self._lru.values()))
            self._close(flow, flow.last_ts)
            self.stats.evicted_limit += 1
