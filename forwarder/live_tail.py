"""The live tail: stored RRPairs fanned out to Subscribe calls, bounded so that no client can
hold the forwarder's memory or threads at the agents' expense.

- Each subscriber has a buffer bounded in RRPairs and in bytes. Publishing (from an Ingest
  thread) never blocks: a pair that does not fit is dropped and counted, the buffer takes
  nothing more, and the call ends with RESOURCE_EXHAUSTED once its client has read what was
  buffered (in order, no hole before the end).
- A client that does not read at all leaves its serving thread blocked in a send; it is cut
  (RESOURCE_EXHAUSTED, from another thread) ``cut_after`` seconds after its buffer overflowed.
- ``Readers`` bounds the calls that read (Subscribe and Export) together, so idle or stalled
  readers cannot take the call slots agents need for Ingest.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Iterable

import grpc
from prometheus_client import Counter, Gauge

from forwarder.filters import matches
from nodetap.v1 import forwarder_pb2 as fpb
from nodetap.v1 import rrpair_pb2 as pb

log = logging.getLogger(__name__)

SUB_DROPPED = Counter(
    "nodetap_forwarder_subscribe_dropped_total", "Live RRPairs dropped for a slow subscriber"
)
SUB_CUT = Counter(
    "nodetap_forwarder_subscribe_cut_total",
    "Subscribe calls ended with RESOURCE_EXHAUSTED (buffer overflowed)",
)
READERS_REFUSED = Counter(
    "nodetap_forwarder_readers_refused_total",
    "Subscribe and Export calls refused because --max-readers calls were already open",
)
SUBSCRIBERS = Gauge("nodetap_forwarder_subscribers", "Live Subscribe calls")

DEFAULT_BUFFER_BYTES = 16 << 20
DEFAULT_MAX_READERS = 16


def _cut(context: grpc.ServicerContext, details: str) -> None:
    """End a call with RESOURCE_EXHAUSTED from any thread, even while its thread is blocked in
    a send to a client that does not read. grpcio's public API can only cancel (CANCELLED);
    its call object can give the status."""
    call = getattr(getattr(context, "_rpc_event", None), "call", None)
    try:
        from grpc._cython import cygrpc

        call.cancel(cygrpc.StatusCode.resource_exhausted, details)  # type: ignore[union-attr]
    except Exception:  # another grpcio: the client sees CANCELLED instead
        context.cancel()


class Subscriber:
    """One Subscribe call's buffer."""

    def __init__(
        self, flt: fpb.Filter, max_pairs: int, max_bytes: int, context: grpc.ServicerContext | None
    ) -> None:
        self.flt = flt
        self._max_pairs = max_pairs
        self._max_bytes = max_bytes
        self._context = context
        self._cond = threading.Condition()
        self._items: deque[pb.RRPair] = deque()
        self._bytes = 0
        self.dropped = 0
        self._timer: threading.Timer | None = None

    @property
    def buffered_bytes(self) -> int:
        return self._bytes

    def offer(self, pair: pb.RRPair, cut_after: float) -> None:
        """Buffer pair, or drop it (counted) when the buffer is full; never blocks."""
        size = pair.ByteSize()
        with self._cond:
            if (
                not self.dropped
                and len(self._items) < self._max_pairs
                and self._bytes + size <= self._max_bytes
            ):
                self._items.append(pair)
                self._bytes += size
                self._cond.notify()
                return
            self.dropped += 1
            first = self.dropped == 1
        SUB_DROPPED.inc()
        if first and self._context is not None:
            self._timer = threading.Timer(cut_after, self._cut_stalled)
            self._timer.daemon = True
            self._timer.start()

    def message(self) -> str:
        return (
            f"subscriber too slow: {self.dropped} RRPairs dropped from the live tail (buffer "
            f"{self._max_pairs} RRPairs / {self._max_bytes} bytes); read them with Export "
            "(time range) and subscribe again"
        )

    def _cut_stalled(self) -> None:
        if self._context is not None and self._context.is_active():
            log.warning("cutting a Subscribe call that stopped reading: %s", self.message())
            SUB_CUT.inc()
            _cut(self._context, self.message())

    def take(self, timeout: float) -> pb.RRPair | None:
        """The next buffered pair, or None after timeout."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            if not self._items:
                return None
            pair = self._items.popleft()
            self._bytes -= pair.ByteSize()
            return pair

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        with self._cond:
            self._items.clear()
            self._bytes = 0


class Hub:
    """Fans stored RRPairs out to live subscribers (bounded buffer each)."""

    def __init__(
        self,
        queue_size: int = 10000,
        queue_bytes: int = DEFAULT_BUFFER_BYTES,
        cut_after: float = 2.0,
    ) -> None:
        self._lock = threading.Lock()
        self._subs: list[Subscriber] = []
        self._queue_size = queue_size
        self._queue_bytes = queue_bytes
        self._cut_after = cut_after

    def add(self, flt: fpb.Filter, context: grpc.ServicerContext | None = None) -> Subscriber:
        sub = Subscriber(flt, self._queue_size, self._queue_bytes, context)
        with self._lock:
            self._subs.append(sub)
        SUBSCRIBERS.inc()
        return sub

    def remove(self, sub: Subscriber) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)
                SUBSCRIBERS.dec()
        sub.close()

    def publish(self, pairs: Iterable[pb.RRPair]) -> None:
        with self._lock:
            subs = list(self._subs)
        if not subs:
            return
        pairs = list(pairs)
        for sub in subs:
            for pair in pairs:
                if matches(sub.flt, pair, check_time=False):
                    sub.offer(pair, self._cut_after)


class Readers:
    """At most ``limit`` reading calls (Subscribe, Export) at once."""

    def __init__(self, limit: int = DEFAULT_MAX_READERS) -> None:
        self.limit = limit
        self._sem = threading.BoundedSemaphore(limit)

    def acquire(self, context: grpc.ServicerContext) -> None:
        """Take a slot, or end the call with RESOURCE_EXHAUSTED."""
        if not self._sem.acquire(blocking=False):
            READERS_REFUSED.inc()
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"too many open Subscribe/Export calls ({self.limit}, --max-readers); retry later",
            )

    def release(self) -> None:
        self._sem.release()
