"""Ordered bytes of one direction of one connection, with gaps made explicit.

Records carry the stream offset of their first byte. Normally they arrive in order and
pass straight through; a record that arrives early (two threads writing one socket, or
a record lost to a full ring buffer) waits until the hole is filled or declared a gap.
Bytes known to be lost (a GAP record: moved but not copied) wait in the same queue, so
that a hole never swallows the records queued behind it: everything after a hole is
delivered, in order, once the hole is declared (issue 18: a close record used to skip the
stream to its end, dropping the next exchange's bytes with the hole). Knows nothing of
BPF or of protocols.
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
    # offset -> (bytes, or None for bytes known lost; size; ts)
    _pending: dict[int, tuple[bytes | None, int, int]] = field(default_factory=dict)
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
        return self._add(offset, data, len(data), ts_ns)

    def push_gap(self, offset: int, size: int, ts_ns: int) -> list[Chunk]:
        """`size` bytes at `offset` were moved but not copied (a GAP record): a gap in
        its place in the order; return what is now in order."""
        if size <= 0:
            return []
        return self._add(offset, None, size, ts_ns)

    def _add(self, offset: int, data: bytes | None, size: int, ts_ns: int) -> list[Chunk]:
        if offset < self.next_offset:
            # already delivered (or declared a gap): keep only the new tail, if any
            skip = self.next_offset - offset
            if skip >= size:
                if data is not None:
                    self.duplicate_bytes += size
                return []
            if data is not None:
                self.duplicate_bytes += skip
                data = data[skip:]
            size -= skip
            offset = self.next_offset
        old = self._pending.get(offset)
        if old is not None:  # a second record at the same offset replaces the first
            self._pending_bytes -= len(old[0]) if old[0] is not None else 0
        self._pending[offset] = (data, size, ts_ns)
        if data is not None:
            self._pending_bytes += size
        out = self._drain_in_order()
        if self._pending_bytes > self.max_pending_bytes:
            out.extend(self.declare_gap())
        return out

    def _drain_in_order(self) -> list[Chunk]:
        out: list[Chunk] = []
        pending = self._pending
        # the record at next_offset first, then any record that overlaps what was delivered
        while pending:
            at = self.next_offset
            entry = pending.pop(at, None)
            if entry is None:
                at = min(pending)
                if at > self.next_offset:
                    break
                entry = pending.pop(at)
            data, size, ts = entry
            if data is not None:
                self._pending_bytes -= size
            if at < self.next_offset:
                # overlaps what was delivered: keep only its new tail
                skip = self.next_offset - at
                if skip >= size:
                    if data is not None:
                        self.duplicate_bytes += size
                    continue
                if data is not None:
                    self.duplicate_bytes += skip
                    data = data[skip:]
                size -= skip
            self.next_offset += size
            if data is None:
                self.gaps += 1
                self.gap_bytes += size
            out.append(Chunk(data, size, ts))
        if not pending:
            self._hole_age = 0
        return out

    def _skip_to(self, offset: int, ts_ns: int) -> list[Chunk]:
        """The hole from next_offset up to `offset` is lost: a gap chunk."""
        missing = offset - self.next_offset
        self.gaps += 1
        self.gap_bytes += missing
        self.next_offset = offset
        return [Chunk(None, missing, ts_ns)]

    def close_at(self, offset: int, ts_ns: int) -> list[Chunk]:
        """The stream ended after `offset` bytes (a close record's count, or the kernel's
        count): deliver every queued record in order, holes between them as gaps, and
        the bytes from the last one up to `offset` as a gap."""
        out: list[Chunk] = []
        while self._pending:
            out.extend(self.declare_gap())
        if offset > self.next_offset:
            out.extend(self._skip_to(offset, ts_ns))
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
        out = self._skip_to(first, self._pending[first][2]) if first > self.next_offset else []
        out.extend(self._drain_in_order())
        return out

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
        """Bytes of records waiting behind a hole."""
        return self._pending_bytes

    @property
    def waiting(self) -> bool:
        """Something (records or known gaps) waits behind a hole."""
        return bool(self._pending)
