"""The agent's gRPC sink: RRPairs to a forwarder, nothing lost while it is away.

``put()`` serialises the RRPair into an in-memory queue and returns (the capture loop never
waits on the network). A sender thread cuts numbered batches (agent id, seq), streams them
over ``Forwarder.Ingest`` (gzip, at most ``window`` batches unacknowledged) and forgets a batch
only when the forwarder acknowledges it as stored. While the forwarder is unreachable, batches
stay in memory up to ``max_memory_bytes``, then go to a bounded outbox on disk (``spool_dir``),
then further RRPairs are dropped and counted. After a reconnect every unacknowledged batch is
sent again with its original (agent id, seq), which the forwarder stores once. On start the
outbox of an earlier run is read back and resent (a corrupt record is skipped and counted).
What waits for an acknowledgement is the backlog (agent/sinks/backlog.py); this module is the
stream to the forwarder.

The caller applies the edge rules (agent.rules) before ``put()``: nothing unredacted reaches
this module, its outbox included.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator

import grpc

from agent.sinks.backlog import Backlog
from agent.sinks.counters import SinkCounters
from agent.sinks.outbox import Outbox, OutboxBusy
from nodetap import transport
from nodetap.errors import StorageError
from nodetap.transport import DEFAULT_MAX_MESSAGE_BYTES, ClientTLS
from nodetap.v1 import forwarder_pb2 as fpb
from nodetap.v1 import rrpair_pb2 as pb

log = logging.getLogger(__name__)

INGEST_METHOD = "/nodetap.v1.Forwarder/Ingest"


class ForwarderSink:
    """Stream RRPairs to the forwarder at addr; see the module docstring."""

    def __init__(
        self,
        addr: str,
        *,
        spool_dir: str | None = None,
        token: str | None = None,
        tls: ClientTLS | None = None,
        agent_id: str | None = None,
        batch_max_pairs: int = 256,
        batch_max_bytes: int = 1024 * 1024,
        linger: float = 0.05,
        window: int = 16,
        max_memory_bytes: int = 64 * 1024 * 1024,
        max_spool_bytes: int = 1024 * 1024 * 1024,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        ack_timeout: float = 15.0,
        compression: str = "gzip",
        start: bool = True,
    ) -> None:
        self.addr = addr
        self.agent_id = agent_id or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}"
        self._metadata = transport.bearer_metadata(token)
        self._linger = linger
        self._window = window
        self._max_pair = max_message_bytes - 4096
        self._ack_timeout = ack_timeout
        self._compression = grpc.Compression.Gzip if compression == "gzip" else None
        self._cv = threading.Condition()
        self._counters = SinkCounters()
        self._session = 0  # bumped when a stream ends: its request generator stops
        self._cursor = 0  # highest batch key sent in the current session
        self._inflight = 0
        self._last_ack = time.monotonic()
        self._call: grpc.Future | None = None
        self._stopping = False
        self._closed = False
        self._backlog = Backlog(
            self.agent_id,
            self._counters,
            batch_max_pairs=batch_max_pairs,
            batch_max_bytes=min(batch_max_bytes, max_message_bytes // 2),
            max_memory_bytes=max_memory_bytes,
        )
        if spool_dir:
            try:
                self._backlog.outbox = Outbox(spool_dir, max_spool_bytes)
                self._backlog.recover()
            except OutboxBusy as e:
                raise StorageError(f"{e}; give each agent its own --spool-dir") from None
            except OSError as e:
                raise StorageError(
                    f"cannot use spool dir {spool_dir}: {e.strerror}; give a writable --spool-dir"
                ) from None
        self._channel = transport.channel(
            addr,
            tls=tls,
            max_message_bytes=max_message_bytes,
            options=[
                ("grpc.initial_reconnect_backoff_ms", 200),
                ("grpc.max_reconnect_backoff_ms", 2000),
            ],
        )
        self._ingest = self._channel.stream_stream(
            INGEST_METHOD,
            request_serializer=lambda b: b,
            response_deserializer=fpb.IngestAck.FromString,
        )
        self._thread = threading.Thread(target=self._run, name="forwarder-sink", daemon=True)
        if start:
            self._thread.start()

    def counters(self) -> dict[str, int]:
        """Event counts (agent/sinks/counters.py) plus the current queue and outbox levels."""
        with self._cv:
            out = dict(self._counters.counts)
            out["queued_pairs"] = self._backlog.queued_pairs()
            out["memory_bytes"] = self._backlog.mem_bytes
            outbox = self._backlog.outbox
            out["spool_bytes"] = outbox.size if outbox else 0
            return out

    # -- producer side --------------------------------------------------------------------------
    def put(self, pair: pb.RRPair) -> None:
        """Queue one RRPair (already filtered and redacted). Never waits on the network."""
        data = pair.SerializeToString()
        size = len(data)
        with self._cv:
            self._counters.count("put")
            if size > self._max_pair:
                self._counters.count("dropped_too_large")
                log.warning(
                    "RRPair %s is %d bytes, over the %d-byte message limit; dropped",
                    pair.id,
                    size,
                    self._max_pair,
                )
                return
            if self._closed:
                self._counters.count("dropped_at_close")
                return
            if self._backlog.add(data):
                self._cv.notify_all()

    # -- flushing and closing -------------------------------------------------------------------
    def flush(self, timeout: float) -> bool:
        """Send what is queued and wait until all of it is acknowledged; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cv:
            self._backlog.cut()
            self._cv.notify_all()
            while self._backlog.batches:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(min(left, 0.1))
            return True

    def close(self, timeout: float = 5.0) -> None:
        """Flush for up to timeout, then stop; what is still unacknowledged goes to the outbox
        (to be resent by the next run) or, without one, is counted as dropped_at_close."""
        if self._closed:
            return
        self.flush(timeout)
        with self._cv:
            self._closed = True
            self._stopping = True
            self._session += 1
            call = self._call
            self._cv.notify_all()
        if call is not None:
            call.cancel()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
        with self._cv:
            self._backlog.close()
        self._channel.close()

    # -- sender thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        backoff = 0.1
        last_code = None  # warn once per kind of failure, not once per retry
        while True:
            with self._cv:
                if self._stopping:
                    return
            acked_before = self._counters["acked"] + self._counters["duplicates"]
            try:
                self._stream()
            except grpc.RpcError as e:
                if self._stopping:
                    return
                code = e.code() if hasattr(e, "code") else None
                details = e.details() if hasattr(e, "details") else str(e)
                if code != last_code:
                    if code == grpc.StatusCode.UNAUTHENTICATED:
                        log.error("forwarder %s refused the token; check --token-file", self.addr)
                    else:
                        log.warning(
                            "forwarder %s: %s (%s); keeping RRPairs and retrying",
                            self.addr,
                            code.name if code is not None else "error",
                            details,
                        )
                    last_code = code
                with self._cv:
                    self._counters.count("reconnects")
                if code == grpc.StatusCode.RESOURCE_EXHAUSTED and "larger than max" in str(details):
                    self._drop_oversized_batch(e)  # (not for "Concurrent RPC limit exceeded")
            if self._counters["acked"] + self._counters["duplicates"] > acked_before:
                backoff = 0.1
                if last_code is not None:
                    log.warning("forwarder %s: delivering again", self.addr)
                    last_code = None
            with self._cv:
                if self._stopping:
                    return
                self._cv.wait(backoff)
                self._backlog.cut_if_due(self._linger)
            backoff = min(backoff * 2, 2.0)

    def _drop_oversized_batch(self, e: grpc.RpcError) -> None:
        """The forwarder refused a message as too large: batches are acknowledged in order, so
        it was the oldest unacknowledged one. Drop it (counted) instead of resending forever."""
        with self._cv:
            b = self._backlog.drop_oldest()
            if b is None:
                return
            self._counters.count("dropped_too_large", b.npairs)
            self._cv.notify_all()
        log.error(
            "forwarder %s refused a batch of %d RRPairs as too large (%s); dropped. Lower the "
            "sink's max_message_bytes or raise the forwarder's --max-message-bytes",
            self.addr,
            b.npairs,
            e.details() if hasattr(e, "details") else e,
        )

    def _stream(self) -> None:
        with self._cv:
            self._session += 1
            session = self._session
            self._cursor = 0
            self._inflight = 0
            self._last_ack = time.monotonic()
        call = self._ingest(
            self._requests(session),
            metadata=self._metadata,
            compression=self._compression,
            wait_for_ready=False,
        )
        with self._cv:
            self._call = call
        try:
            for ack in call:
                self._on_ack(ack)
        finally:
            with self._cv:
                self._call = None
                if self._session == session:
                    self._session += 1  # stop this stream's request generator
                self._cv.notify_all()

    def _on_ack(self, ack: fpb.IngestAck) -> None:
        with self._cv:
            self._last_ack = time.monotonic()
            b = self._backlog.ack(ack.agent_id, ack.seq)
            if b is None:
                return
            self._inflight = max(0, self._inflight - 1)
            self._counters.count("acked", b.npairs)
            if ack.duplicate:
                self._counters.count("duplicates")
            self._cv.notify_all()

    def _requests(self, session: int) -> Iterator[bytes]:
        """The request stream of one Ingest call: unacknowledged batches in order, then new ones."""
        while True:
            with self._cv:
                while True:
                    if self._session != session or self._stopping:
                        return
                    self._backlog.cut_if_due(self._linger)
                    nxt = self._backlog.next_after(self._cursor)
                    if nxt is not None and self._inflight < self._window:
                        break
                    if (
                        self._inflight
                        and time.monotonic() - self._last_ack > self._ack_timeout
                        and self._call is not None
                    ):
                        log.info(
                            "forwarder %s: no ack for %.0fs; reconnecting",
                            self.addr,
                            self._ack_timeout,
                        )
                        self._call.cancel()
                        return
                    self._cv.wait(self._linger if self._backlog.pending else 0.2)
                self._cursor = nxt.key
                self._inflight += 1
                self._counters.count("resent" if nxt.sent else "batches_sent")
                nxt.sent = True
                data, ref = nxt.data, nxt.ref
            if data is None:
                assert ref is not None
                data = self._backlog.read(ref)
            yield data
