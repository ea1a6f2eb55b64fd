"""Ordered bytes of one direction of one connection, with gaps made explicit.

Records carry the stream offset of their first byte. Normally they arrive in order and
pass straight through; a record that arrives early (two threads writing one socket, or
a record lost to a full ring buffer) waits until the hole is filled or declared a gap.
Knows nothing of BPF or of protocols.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Chunk:
    """Bytes in order: `data` is None for a gap of `size` bytes (size 0: unknown size)."""

    data: bytes | None
    size: int
    ts_ns: int


@dataclass(slots=True)
class OrderedStream:
    """Reorders records by offset; declares holes that outlive one drain as gaps."""

    next_offset: int = 0
    max_pending_bytes: int = 4 << 20
    _pending: dict[int, tuple[bytes, int]] = field(default_factory=dict)
    _pending_bytes: int = 0
    _hole_age: int = 0
    gaps: int = 0
    gap_bytes: int = 0
    duplicate_bytes: int = 0

    def push(self, offset: int, data: bytes, ts_ns: int) -> list[Chunk]:
        """Add a record; return what is now in order."""
        if offset == self.next_offset and not self._pending:
            self.next_offset += len(data)
            return [Chunk(data, len(data), ts_ns)]
        if offset < self.next_offset:
            # already delivered (or declared a gap): keep only the new tail, if any
            skip = self.next_offset - offset
            if skip >= len(data):
                self.duplicate_bytes += len(data)
                return []
            self.duplicate_bytes += skip
            data = data[skip:]
            offset = self.next_offset
        self._pending[offset] = (data, ts_ns)
        self._pending_bytes += len(data)
        out = self._drain_in_order()
        if self._pending_bytes > self.max_pending_bytes:
            out.extend(self.declare_gap())
        return out

    def _drain_in_order(self) -> list[Chunk]:
        out: list[Chunk] = []
        while self.next_offset in self._pending:
            data, ts = self._pending.pop(self.next_offset)
            self._pending_bytes -= len(data)
            self.next_offset += len(data)
            out.append(Chunk(data, len(data), ts))
        if not self._pending:
            self._hole_age = 0
        return out

    def gap_to(self, offset: int, ts_ns: int) -> list[Chunk]:
        """Bytes up to `offset` are known to be lost (a GAP record, or a close whose byte
        count is beyond what arrived)."""
        out: list[Chunk] = []
        if offset > self.next_offset:
            missing = offset - self.next_offset
            self.gaps += 1
            self.gap_bytes += missing
            out.append(Chunk(None, missing, ts_ns))
            self.next_offset = offset
            # records that fell inside the hole are now stale
            for off in [o for o in self._pending if o < offset]:
                data, ts = self._pending.pop(off)
                self._pending_bytes -= len(data)
                end = off + len(data)
                if end > offset:
                    self._pending[offset] = (data[offset - off :], ts)
                    self._pending_bytes += end - offset
        out.extend(self._drain_in_order())
        return out

    def unknown_gap(self, ts_ns: int) -> list[Chunk]:
        """Bytes of unknown number were moved without being seen (sendmmsg)."""
        self.gaps += 1
        return [Chunk(None, 0, ts_ns)]

    def declare_gap(self) -> list[Chunk]:
        """Give up waiting for the first hole: skip to the earliest pending record."""
        if not self._pending:
            return []
        first = min(self._pending)
        return self.gap_to(first, self._pending[first][1])

    def end_of_batch(self) -> list[Chunk]:
        """Called after each drain of the ring buffer. A hole that has survived a whole
        drain cannot be filled any more (records are consumed in reservation order)."""
        if not self._pending:
            return []
        self._hole_age += 1
        if self._hole_age < 2:
            return []
        self._hole_age = 0
        return self.declare_gap()

    @property
    def pending_bytes(self) -> int:
        return self._pending_bytes
