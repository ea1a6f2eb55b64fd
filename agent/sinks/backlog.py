"""The forwarder sink's backlog: every RRPair the forwarder has not acknowledged yet, in order.

RRPairs wait in a pending list until a numbered batch (agent id, seq) is cut from them. Batches
stay in memory up to ``max_memory_bytes``; beyond it the oldest move to the outbox on disk
(agent/sinks/outbox.py) when there is one, and a batch leaves the backlog when the forwarder
acknowledges it. On start the outbox of an earlier run is read back as batches to resend.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from dataclasses import dataclass

from agent.sinks.counters import SinkCounters
from agent.sinks.outbox import Outbox, OutboxRef
from nodetap.v1 import forwarder_pb2 as fpb


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def encode_batch(agent_id: str, seq: int, pairs: list[bytes]) -> bytes:
    """An IngestBatch on the wire, from already serialised RRPairs (no second copy)."""
    aid = agent_id.encode()
    parts = [b"\x0a", _varint(len(aid)), aid, b"\x10", _varint(seq)]
    for p in pairs:
        parts += [b"\x1a", _varint(len(p)), p]
    return b"".join(parts)


@dataclass(slots=True)
class Batch:
    key: int  # local order
    agent_id: str
    seq: int
    npairs: int
    data: bytes | None  # in memory, or None when in the outbox
    ref: OutboxRef | None  # on disk, or None
    sent: bool = False  # sent at least once (sending again counts as a resend)


class Backlog:
    """The unacknowledged RRPairs of one sink. Not thread-safe: the sink holds its lock."""

    def __init__(
        self,
        agent_id: str,
        counters: SinkCounters,
        *,
        batch_max_pairs: int,
        batch_max_bytes: int,
        max_memory_bytes: int,
        outbox: Outbox | None = None,
    ) -> None:
        self.agent_id = agent_id
        self.outbox = outbox
        self._counters = counters
        self._batch_max_pairs = batch_max_pairs
        self._batch_max_bytes = batch_max_bytes
        self._max_memory = max_memory_bytes
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.pending_since = 0.0
        self.mem_bytes = 0
        self.batches: OrderedDict[int, Batch] = OrderedDict()
        self._by_id: dict[tuple[str, int], int] = {}
        self._next_key = 1
        self._seq = 0

    def queued_pairs(self) -> int:
        return len(self.pending) + sum(b.npairs for b in self.batches.values())

    # -- adding ---------------------------------------------------------------------------------
    def add(self, data: bytes) -> bool:
        """Queue one serialised RRPair (or count it as dropped when memory and outbox are full).
        True when the sender should look again: a new batch began, or one was cut."""
        size = len(data)
        if self.mem_bytes + size > self._max_memory and not self._spill(size):
            # Memory stays full: this RRPair goes to the outbox as a batch of its own.
            if not self._to_outbox_directly(data):
                self._counters.count("dropped_spool_full" if self.outbox else "dropped_queue_full")
            return False
        began = not self.pending
        if began:
            self.pending_since = time.monotonic()  # the sender now waits `linger`
        self.pending.append(data)
        self.pending_bytes += size
        self.mem_bytes += size
        if (
            len(self.pending) >= self._batch_max_pairs
            or self.pending_bytes >= self._batch_max_bytes
        ):
            self.cut()
            return True
        return began

    def cut(self) -> None:
        """Make the pending RRPairs a numbered batch."""
        if not self.pending:
            return
        self._seq += 1
        data = encode_batch(self.agent_id, self._seq, self.pending)
        self.mem_bytes += len(data) - self.pending_bytes
        self._append(Batch(self._next_key, self.agent_id, self._seq, len(self.pending), data, None))
        self.pending = []
        self.pending_bytes = 0

    def cut_if_due(self, linger: float) -> None:
        if self.pending and time.monotonic() - self.pending_since >= linger:
            self.cut()

    def _append(self, b: Batch) -> None:
        self._next_key += 1
        self.batches[b.key] = b
        self._by_id[(b.agent_id, b.seq)] = b.key

    def _to_outbox_directly(self, data: bytes) -> bool:
        if self.outbox is None:
            return False
        seq = self._seq + 1
        ref = self.outbox.write(encode_batch(self.agent_id, seq, [data]))
        if ref is None:
            return False
        self._seq = seq
        self._append(Batch(self._next_key, self.agent_id, seq, 1, None, ref))
        self._counters.count("spooled")
        return True

    def _spill(self, need: int) -> bool:
        """Move in-memory batches to the outbox (oldest first) until need bytes fit in memory."""
        if self.outbox is None:
            return False
        self.cut()
        for b in self.batches.values():
            if self.mem_bytes + need <= self._max_memory:
                break
            if b.data is None:
                continue
            ref = self.outbox.write(b.data)
            if ref is None:
                return False
            self.mem_bytes -= len(b.data)
            b.data, b.ref = None, ref
            self._counters.count("spooled", b.npairs)
        return self.mem_bytes + need <= self._max_memory

    def recover(self) -> None:
        """Take in the batches an earlier run left in the outbox (to be resent)."""
        assert self.outbox is not None
        for ref, data in self.outbox.recover():
            try:
                batch = fpb.IngestBatch.FromString(data)
            except Exception:  # a record with a good checksum but not a batch
                self.outbox.corrupt += 1
                self.outbox.release(ref)
                continue
            key = self._next_key
            b = Batch(key, batch.agent_id, batch.seq, len(batch.pairs), None, ref, sent=True)
            self._append(b)
            self._counters.count("recovered", b.npairs)
        if self.outbox.corrupt:
            self._counters.count("spool_corrupt", self.outbox.corrupt)

    # -- sending and acknowledging ----------------------------------------------------------------
    def next_after(self, key: int) -> Batch | None:
        """The oldest batch after local key `key` (to send next), or None."""
        return next((b for k, b in self.batches.items() if k > key), None)

    def read(self, ref: OutboxRef) -> bytes:
        """A batch kept in the outbox (the sender reads it without the lock)."""
        assert self.outbox is not None
        return self.outbox.read(ref)

    def ack(self, agent_id: str, seq: int) -> Batch | None:
        """Forget the acknowledged batch; None when it is not (or no longer) in the backlog."""
        key = self._by_id.pop((agent_id, seq), None)
        b = self.batches.pop(key, None) if key is not None else None
        if b is not None:
            self._free(b)
        return b

    def drop_oldest(self) -> Batch | None:
        """Forget the oldest batch without an acknowledgement (the forwarder refused it)."""
        if not self.batches:
            return None
        _, b = self.batches.popitem(last=False)
        self._by_id.pop((b.agent_id, b.seq), None)
        self._free(b)
        return b

    def _free(self, b: Batch) -> None:
        if b.data is not None:
            self.mem_bytes -= len(b.data)
        if b.ref is not None and self.outbox is not None:
            self.outbox.release(b.ref)

    # -- closing --------------------------------------------------------------------------------
    def close(self) -> None:
        """Keep what is still in memory in the outbox (for the next run to resend) or, without
        room or outbox, count it as dropped; then close the outbox."""
        self.cut()
        for b in self.batches.values():
            if b.data is None:
                continue
            ref = self.outbox.write(b.data) if self.outbox else None
            if ref is None:
                self._counters.count(
                    "dropped_spool_full" if self.outbox else "dropped_at_close", b.npairs
                )
            else:
                self._counters.count("spooled", b.npairs)
            b.data, b.ref = None, ref
        self.mem_bytes = 0
        if self.outbox is not None:
            self.outbox.close()
