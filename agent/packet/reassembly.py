"""One direction of a TCP connection: segments in, ordered byte chunks and gaps out.

Sans-IO. Sequence numbers are 32-bit and wrap; the stream works in 64-bit offsets
counted from the first byte (offset 0 is the byte after the SYN, or the first byte seen
when the capture started mid-connection). Out-of-order segments wait in a bounded buffer;
retransmitted and overlapping bytes are dropped, the first copy wins, and a differing
copy counts as a conflict. Bytes that never arrive become a Gap event: when the peer
acknowledges past them (the receiver got them, the capture did not), when the buffer
limit is reached, or when the stream is flushed (FIN, RST, eviction, end of capture).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

MASK32 = 0xFFFFFFFF
HALF32 = 0x80000000
# A segment this far ahead of the next expected byte is not plausible: dropped as bogus.
MAX_AHEAD = 1 << 30
_EMPTY = bytearray()  # shared placeholder until a stream delivers bytes (never written)
_NO_STARTS: list[int] = []  # shared placeholders, never written (see TcpStream._insert)
_NO_DATA: dict[int, bytes] = {}
_NO_TS: dict[int, int] = {}


@dataclass(slots=True)
class Chunk:
    """Bytes delivered in order, starting at stream offset `offset`."""

    offset: int
    data: bytes
    ts_ns: int


@dataclass(slots=True)
class Gap:
    """`size` bytes at stream offset `offset` that the capture never saw."""

    offset: int
    size: int
    ts_ns: int


StreamEvent = Chunk | Gap


@dataclass(slots=True)
class StreamStats:
    """Counters of one direction."""

    segments: int = 0  # segments with payload
    bytes: int = 0  # bytes delivered
    out_of_order: int = 0  # segments that had to wait for earlier bytes
    duplicate_bytes: int = 0  # retransmitted or overlapping bytes dropped
    conflicts: int = 0  # overlapping segments whose bytes differ from the first copy
    gaps: int = 0  # gap events
    gap_bytes: int = 0
    bogus: int = 0  # segments far outside the window


class TcpStream:
    """Reassembles one direction of a TCP connection."""

    __slots__ = (
        "_base",
        "_max_buffer",
        "_pend_data",
        "_pend_starts",
        "_pend_ts",
        "_recent",
        "_recent_keep",
        "_recent_start",
        "fin_offset",
        "next_offset",
        "pending_bytes",
        "started",
        "stats",
    )

    def __init__(self, max_buffer: int = 1 << 20, recent_keep: int = 1 << 16) -> None:
        self._max_buffer = max_buffer
        self._recent_keep = recent_keep
        self._base = 0
        self.started = False
        self.next_offset = 0
        self.fin_offset: int | None = None
        # Bytes waiting for earlier ones: sorted disjoint starts, and data and time by start.
        # Shared empty placeholders until a segment arrives out of order (most never do).
        self._pend_starts: list[int] = _NO_STARTS
        self._pend_data: dict[int, bytes] = _NO_DATA
        self._pend_ts: dict[int, int] = _NO_TS
        self.pending_bytes = 0
        self._recent = _EMPTY  # the last delivered bytes, to spot conflicting copies
        self._recent_start = 0
        self.stats = StreamStats()

    # -- positions ---------------------------------------------------------------------

    def start(self, seq: int) -> None:
        """The sequence number of the stream's first byte (ISN + 1, or the first seen)."""
        self._base = seq & MASK32
        self.started = True

    def offset_of(self, seq: int) -> int:
        """The 64-bit stream offset of a 32-bit sequence number, nearest the next byte."""
        rel = (seq - self._base) & MASK32
        diff = ((rel - (self.next_offset & MASK32) + HALF32) & MASK32) - HALF32
        return self.next_offset + diff

    # -- input -------------------------------------------------------------------------

    def segment(self, seq: int, data: bytes, ts_ns: int) -> list[StreamEvent]:
        """One segment's payload; returns what became deliverable in order."""
        if not data:
            return []
        if not self.started:
            self.start(seq)
        stats = self.stats
        stats.segments += 1
        off = self.offset_of(seq)
        nxt = self.next_offset
        if off == nxt and not self._pend_starts:  # the common case: next bytes, nothing waiting
            self._deliver_new(data, ts_ns)
            return [Chunk(off, data, ts_ns)]
        end = off + len(data)
        if end <= nxt:
            self._check_old(off, data)
            return []
        if off - nxt > MAX_AHEAD:
            stats.bogus += 1
            return []
        if off < nxt:
            self._check_old(off, data[: nxt - off])
            data = data[nxt - off :]
            off = nxt
        if off > nxt:
            stats.out_of_order += 1
        self._insert(off, data, ts_ns)
        events = self._drain()
        if self.pending_bytes > self._max_buffer:
            events.extend(self._skip_to(self._pend_starts[0], ts_ns))
            events.extend(self._drain())
        return events

    def acked(self, ack: int, ts_ns: int) -> list[StreamEvent]:
        """The peer acknowledged bytes up to `ack`: bytes before it that the capture
        missed will never come, so deliver what waits up to there and report the holes."""
        if not self.started:
            return []
        target = self.offset_of(ack)
        if self.fin_offset is not None and target > self.fin_offset:
            target = self.fin_offset  # the FIN takes one sequence number
        if target <= self.next_offset or target - self.next_offset > MAX_AHEAD:
            return []
        events: list[StreamEvent] = []
        while self.next_offset < target:
            starts = self._pend_starts
            if starts and starts[0] < target:
                events.extend(self._skip_to(starts[0], ts_ns))
                events.extend(self._drain())
            else:
                events.extend(self._skip_to(target, ts_ns))
        return events

    def lost(self, seq: int, captured: int, size: int, ts_ns: int) -> list[StreamEvent]:
        """A segment at `seq` was cut after `captured` bytes (snap length): `size` bytes
        are lost. Reported now when they are next in line, otherwise left to the acks."""
        if not self.started or self.offset_of(seq) + captured != self.next_offset:
            return []
        events = self._skip_to(self.next_offset + size, ts_ns)
        events.extend(self._drain())
        return events

    def fin(self, seq: int, payload_len: int) -> None:
        """A FIN whose segment starts at `seq` with `payload_len` bytes of payload."""
        if not self.started:
            self.start(seq)
        self.fin_offset = self.offset_of(seq) + payload_len

    def flush(self, ts_ns: int) -> list[StreamEvent]:
        """The stream ends (close, reset, eviction, end of capture): deliver everything
        that waits, with gaps for the holes, and a gap up to a FIN seen beyond it."""
        events: list[StreamEvent] = []
        while self._pend_starts:
            events.extend(self._skip_to(self._pend_starts[0], ts_ns))
            events.extend(self._drain())
        fin = self.fin_offset
        if fin is not None and 0 < fin - self.next_offset <= MAX_AHEAD:
            events.extend(self._skip_to(fin, ts_ns))
        return events

    # -- internals ---------------------------------------------------------------------

    def _deliver_new(self, data: bytes, ts_ns: int) -> None:
        n = len(data)
        self.next_offset += n
        self.stats.bytes += n
        recent = self._recent
        if recent is _EMPTY:
            recent = self._recent = bytearray()
        recent += data
        excess = len(recent) - 2 * self._recent_keep
        if excess > 0:
            cut = excess + self._recent_keep
            del recent[:cut]
            self._recent_start += cut

    def _check_old(self, off: int, data: bytes) -> None:
        """Bytes at offsets already delivered: count them, compare with what was seen."""
        self.stats.duplicate_bytes += len(data)
        lo = max(off, self._recent_start)
        hi = min(off + len(data), self._recent_start + len(self._recent))
        if lo < hi:
            seen = self._recent[lo - self._recent_start : hi - self._recent_start]
            if seen != data[lo - off : hi - off]:
                self.stats.conflicts += 1

    def _insert(self, off: int, data: bytes, ts_ns: int) -> None:
        """Store bytes that wait for earlier ones, keeping the first copy of every byte."""
        if self._pend_starts is _NO_STARTS:
            self._pend_starts, self._pend_data, self._pend_ts = [], {}, {}
        starts = self._pend_starts
        pdata = self._pend_data
        end = off + len(data)
        i = bisect.bisect_right(starts, off) - 1
        if i < 0:
            i = 0
        pieces: list[tuple[int, bytes]] = []
        cur = off
        conflict = False
        dup = 0
        while cur < end:
            # the next waiting range that ends after `cur`
            while i < len(starts) and starts[i] + len(pdata[starts[i]]) <= cur:
                i += 1
            if i >= len(starts) or starts[i] >= end:
                pieces.append((cur, data[cur - off :]))
                break
            s = starts[i]
            e = s + len(pdata[s])
            if s > cur:
                pieces.append((cur, data[cur - off : s - off]))
                cur = s
            hi = min(e, end)
            old = pdata[s][cur - s : hi - s]
            if old != data[cur - off : hi - off]:
                conflict = True
            dup += hi - cur
            cur = hi
        self.stats.duplicate_bytes += dup
        if conflict:
            self.stats.conflicts += 1
        for start, piece in pieces:
            if piece:
                bisect.insort(starts, start)
                pdata[start] = piece
                self._pend_ts[start] = ts_ns
                self.pending_bytes += len(piece)

    def _drain(self) -> list[StreamEvent]:
        """Deliver waiting ranges that now start at the next expected byte."""
        events: list[StreamEvent] = []
        starts = self._pend_starts
        while starts and starts[0] <= self.next_offset:
            s = starts.pop(0)
            data = self._pend_data.pop(s)
            ts = self._pend_ts.pop(s)
            self.pending_bytes -= len(data)
            if s < self.next_offset:  # cannot happen with disjoint ranges; be safe
                data = data[self.next_offset - s :]
                s = self.next_offset
            if data:
                self._deliver_new(data, ts)
                events.append(Chunk(s, data, ts))
        return events

    def _skip_to(self, target: int, ts_ns: int) -> list[StreamEvent]:
        """Declare the bytes from the next expected one up to `target` lost."""
        size = target - self.next_offset
        if size <= 0:
            return []
        gap = Gap(self.next_offset, size, ts_ns)
        self.next_offset = target
        self.stats.gaps += 1
        self.stats.gap_bytes += size
        self._recent = _EMPTY
        self._recent_start = target
        return [gap]
