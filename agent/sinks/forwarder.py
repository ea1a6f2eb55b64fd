"""The agent's gRPC sink: RRPairs to a forwarder, nothing lost while it is away.

``put()`` serialises the RRPair into an in-memory queue and returns (the capture loop never
waits on the network). A sender thread cuts numbered batches (agent id, seq), streams them
over ``Forwarder.Ingest`` (gzip, at most ``window`` batches unacknowledged) and forgets a batch
only when the forwarder acknowledges it as stored. While the forwarder is unreachable, batches
stay in memory up to ``max_memory_bytes``, then go to a bounded disk spool (``spool_dir``),
then further RRPairs are dropped and counted. After a reconnect every unacknowledged batch is
sent again with its original (agent id, seq), which the forwarder stores once. On start the
spool of an earlier run is read back and resent (a corrupt record is skipped and counted).

The caller applies the edge rules (agent.rules) before ``put()``: nothing unredacted reaches
this module, its spool included.
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
from prometheus_client import Counter

from agent.sinks.spool import Spool, SpoolBusy, SpoolRef
from nodetap.errors import NodetapError
from nodetap.v1 import forwarder_pb2 as fpb
from nodetap.v1 import rrpair_pb2 as pb

log = logging.getLogger(__name__)

INGEST_METHOD = "/nodetap.v1.Forwarder/Ingest"
DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024

SINK_PAIRS = Counter(
    "nodetap_sink_pairs_total",
    "RRPairs through the forwarder sink, by event (put, acked, spooled, dropped_*)",
    ["event"],
)
SINK_BATCHES = Counter(
    "nodetap_sink_batches_total", "Batches by event (sent, resent, acked, duplicate)", ["event"]
)
SINK_SPOOL_CORRUPT = Counter(
    "nodetap_sink_spool_corrupt_records_total", "Corrupt spool records skipped on start"
)
SINK_RECONNECTS = Counter("nodetap_sink_reconnects_total", "Ingest streams that failed")

COUNTER_NAMES = (
    "put",  # RRPairs given to put()
    "acked",  # RRPairs the forwarder acknowledged as stored
    "batches_sent",  # batches sent for the first time
    "resent",  # batches sent again after a reconnect (or after a restart, from the spool)
    "duplicates",  # acknowledgements saying the batch was already stored
    "spooled",  # RRPairs written to the disk spool
    "recovered",  # RRPairs read back from the spool of an earlier run
    "spool_corrupt",  # corrupt spool records skipped on start
    "dropped_spool_full",  # RRPairs dropped: memory queue and spool both full
    "dropped_queue_full",  # RRPairs dropped: memory queue full and no spool configured
    "dropped_too_large",  # RRPairs bigger than the message size limit
    "dropped_at_close",  # RRPairs unacknowledged at close() with no spool to keep them
    "reconnects",  # Ingest streams that ended in an error
)


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
class _Batch:
    key: int  # local order
    agent_id: str
    seq: int
    npairs: int
    data: bytes | None  # in memory, or None when spooled
    ref: SpoolRef | None  # on disk, or None
    sent: bool = False  # sent at least once (sending again counts as a resend)


class ForwarderSink:
    """Stream RRPairs to the forwarder at addr; see the module docstring."""

    def __init__(
        self,
        addr: str,
        *,
        spool_dir: str | None = None,
        token: str | None = None,
        tls_ca: str | None = None,
        tls_cert: str | None = None,
        tls_key: str | None = None,
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
        self._metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self._batch_max_pairs = batch_max_pairs
        self._batch_max_bytes = min(batch_max_bytes, max_message_bytes // 2)
        self._linger = linger
        self._window = window
        self._max_memory = max_memory_bytes
        self._max_pair = max_message_bytes - 4096
        self._ack_timeout = ack_timeout
        self._compression = grpc.Compression.Gzip if compression == "gzip" else None
        self._cv = threading.Condition()
        self._counters = dict.fromkeys(COUNTER_NAMES, 0)
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._pending_since = 0.0
        self._mem_bytes = 0
        self._batches: OrderedDict[int, _Batch] = OrderedDict()
        self._by_id: dict[tuple[str, int], int] = {}
        self._next_key = 1
        self._seq = 0
        self._session = 0  # bumped when a stream ends: its request generator stops
        self._cursor = 0  # highest batch key sent in the current session
        self._inflight = 0
        self._last_ack = time.monotonic()
        self._call: grpc.Future | None = None
        self._stopping = False
        self._closed = False
        opts = [
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.keepalive_time_ms", 2000),
            ("grpc.keepalive_timeout_ms", 3000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 2000),
        ]
        if tls_ca:
            creds = grpc.ssl_channel_credentials(
                root_certificates=Path(tls_ca).read_bytes(),
                private_key=Path(tls_key).read_bytes() if tls_key else None,
                certificate_chain=Path(tls_cert).read_bytes() if tls_cert else None,
            )
            self._channel = grpc.secure_channel(addr, creds, options=opts)
        else:
            self._channel = grpc.insecure_channel(addr, options=opts)
        self._ingest = self._channel.stream_stream(
            INGEST_METHOD,
            request_serializer=lambda b: b,
            response_deserializer=fpb.IngestAck.FromString,
        )
        self._spool: Spool | None = None
        if spool_dir:
            try:
                self._spool = Spool(spool_dir, max_spool_bytes)
                self._recover()
            except SpoolBusy as e:
                raise NodetapError(f"{e}; give each agent its own --spool-dir") from None
            except OSError as e:
                raise NodetapError(f"cannot use spool dir {spool_dir}: {e.strerror}") from None
        self._thread = threading.Thread(target=self._run, name="forwarder-sink", daemon=True)
        if start:
            self._thread.start()

    # -- counters -----------------------------------------------------------------------------
    def _count(self, name: str, n: int = 1) -> None:
        self._counters[name] += n
        if name in ("put", "acked", "spooled", "recovered") or name.startswith("dropped_"):
            SINK_PAIRS.labels(name).inc(n)
        elif name in ("batches_sent", "resent", "duplicates"):
            SINK_BATCHES.labels(name).inc(n)
        elif name == "spool_corrupt":
            SINK_SPOOL_CORRUPT.inc(n)
        elif name == "reconnects":
            SINK_RECONNECTS.inc(n)

    def counters(self) -> dict[str, int]:
        """Event counts (COUNTER_NAMES) plus the current queue and spool levels."""
        with self._cv:
            out = dict(self._counters)
            out["queued_pairs"] = len(self._pending) + sum(b.npairs for b in self._batches.values())
            out["memory_bytes"] = self._mem_bytes
            out["spool_bytes"] = self._spool.size if self._spool else 0
            return out

    # -- producer side --------------------------------------------------------------------------
    def put(self, pair: pb.RRPair) -> None:
        """Queue one RRPair (already filtered and redacted). Never waits on the network."""
        data = pair.SerializeToString()
        size = len(data)
        with self._cv:
            self._count("put")
            if size > self._max_pair:
                self._count("dropped_too_large")
                log.warning(
                    "RRPair %s is %d bytes, over the %d-byte message limit; dropped",
                    pair.id,
                    size,
                    self._max_pair,
                )
                return
            if self._closed:
                self._count("dropped_at_close")
                return
            if self._mem_bytes + size > self._max_memory and not self._spill_locked(size):
                # Memory stays full: this RRPair goes to the spool as a batch of its own.
                if not self._spool_directly_locked(data):
                    self._count("dropped_spool_full" if self._spool else "dropped_queue_full")
                return
            if not self._pending:
                self._pending_since = time.monotonic()
                self._cv.notify_all()  # the sender now waits `linger`, not its idle period
            self._pending.append(data)
            self._pending_bytes += size
            self._mem_bytes += size
            if (
                len(self._pending) >= self._batch_max_pairs
                or self._pending_bytes >= self._batch_max_bytes
            ):
                self._cut_locked()
                self._cv.notify_all()

    def _cut_locked(self) -> None:
        if not self._pending:
            return
        self._seq += 1
        data = encode_batch(self.agent_id, self._seq, self._pending)
        key = self._next_key
        self._next_key += 1
        self._mem_bytes += len(data) - self._pending_bytes
        self._batches[key] = _Batch(key, self.agent_id, self._seq, len(self._pending), data, None)
        self._by_id[(self.agent_id, self._seq)] = key
        self._pending = []
        self._pending_bytes = 0

    def _spool_directly_locked(self, data: bytes) -> bool:
        if self._spool is None:
            return False
        seq = self._seq + 1
        ref = self._spool.write(encode_batch(self.agent_id, seq, [data]))
        if ref is None:
            return False
        self._seq = seq
        key = self._next_key
        self._next_key += 1
        self._batches[key] = _Batch(key, self.agent_id, seq, 1, None, ref)
        self._by_id[(self.agent_id, seq)] = key
        self._count("spooled")
        return True

    def _spill_locked(self, need: int) -> bool:
        """Move in-memory batches to the spool (oldest first) until need bytes fit in memory."""
        if self._spool is None:
            return False
        self._cut_locked()
        for b in self._batches.values():
            if self._mem_bytes + need <= self._max_memory:
                break
            if b.data is None:
                continue
            ref = self._spool.write(b.data)
            if ref is None:
                return False
            self._mem_bytes -= len(b.data)
            b.data, b.ref = None, ref
            self._count("spooled", b.npairs)
        return self._mem_bytes + need <= self._max_memory

    def _recover(self) -> None:
        assert self._spool is not None
        for ref, data in self._spool.recover():
            try:
                batch = fpb.IngestBatch.FromString(data)
            except Exception:  # a record with a good checksum but not a batch
                self._spool.corrupt += 1
                self._spool.release(ref)
                continue
            key = self._next_key
            self._next_key += 1
            b = _Batch(key, batch.agent_id, batch.seq, len(batch.pairs), None, ref, sent=True)
            self._batches[key] = b
            self._by_id[(batch.agent_id, batch.seq)] = key
            self._count("recovered", b.npairs)
        if self._spool.corrupt:
            self._count("spool_corrupt", self._spool.corrupt)

    # -- flushing and closing -------------------------------------------------------------------
    def flush(self, timeout: float) -> bool:
        """Send what is queued and wait until all of it is acknowledged; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._cv:
            self._cut_locked()
            self._cv.notify_all()
            while self._batches:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(min(left, 0.1))
            return True

    def close(self, timeout: float = 5.0) -> None:
        """Flush for up to timeout, then stop; what is still unacknowledged goes to the spool
        (to be resent by the next run) or, without a spool, is counted as dropped_at_close."""
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
            self._cut_locked()
            for b in self._batches.values():
                if b.data is None:
                    continue
                ref = self._spool.write(b.data) if self._spool else None
                if ref is None:
                    self._count(
                        "dropped_spool_full" if self._spool else "dropped_at_close", b.npairs
                    )
                else:
                    self._count("spooled", b.npairs)
                b.data, b.ref = None, ref
            self._mem_bytes = 0
            if self._spool is not None:
                self._spool.close()
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
                    self._count("reconnects")
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
                self._cut_pending_if_due_locked()
            backoff = min(backoff * 2, 2.0)

    def _drop_oversized_batch(self, e: grpc.RpcError) -> None:
        """The forwarder refused a message as too large: batches are acknowledged in order, so
        it was the oldest unacknowledged one. Drop it (counted) instead of resending forever."""
        with self._cv:
            if not self._batches:
                return
            key, b = next(iter(self._batches.items()))
            del self._batches[key]
            self._by_id.pop((b.agent_id, b.seq), None)
            if b.data is not None:
                self._mem_bytes -= len(b.data)
            if b.ref is not None and self._spool is not None:
                self._spool.release(b.ref)
            self._count("dropped_too_large", b.npairs)
            self._cv.notify_all()
        log.error(
            "forwarder %s refused a batch of %d RRPairs as too large (%s); dropped. Lower the "
            "sink's max_message_bytes or raise the forwarder's --max-message-bytes",
            self.addr,
            b.npairs,
            e.details() if hasattr(e, "details") else e,
        )

    def _cut_pending_if_due_locked(self) -> None:
        if self._pending and time.monotonic() - self._pending_since >= self._linger:
            self._cut_locked()

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
            key = self._by_id.pop((ack.agent_id, ack.seq), None)
            b = self._batches.pop(key, None) if key is not None else None
            if b is None:
                return
            self._inflight = max(0, self._inflight - 1)
            if b.data is not None:
                self._mem_bytes -= len(b.data)
            if b.ref is not None and self._spool is not None:
                self._spool.release(b.ref)
            self._count("acked", b.npairs)
            if ack.duplicate:
                self._count("duplicates")
            self._cv.notify_all()

    def _requests(self, session: int) -> Iterator[bytes]:
        """The request stream of one Ingest call: unacknowledged batches in order, then new ones."""
        while True:
            with self._cv:
                while True:
                    if self._session != session or self._stopping:
                        return
                    self._cut_pending_if_due_locked()
                    nxt = next((b for k, b in self._batches.items() if k > self._cursor), None)
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
                    self._cv.wait(self._linger if self._pending else 0.2)
                self._cursor = nxt.key
                self._inflight += 1
                self._count("resent" if nxt.sent else "batches_sent")
                nxt.sent = True
                data, ref = nxt.data, nxt.ref
            if data is None:
                assert ref is not None and self._spool is not None
                data = self._spool.read(ref)
            yield data


# -- command-line wiring -----------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--forwarder ADDR, --spool-dir, --token-file, --tls-ca (and --spool-max-bytes)."""
    g = parser.add_argument_group("forwarder sink")
    g.add_argument(
        "--forwarder", metavar="ADDR", help="stream RRPairs to this forwarder (HOST:PORT)"
    )
    g.add_argument(
        "--spool-dir",
        metavar="DIR",
        help="spool batches here while the forwarder is unreachable (bounded)",
    )
    g.add_argument(
        "--spool-max-bytes",
        metavar="N",
        type=int,
        default=1024 * 1024 * 1024,
        help="bound of the spool on disk (default 1 GiB); beyond it RRPairs are "
        "dropped and counted",
    )
    g.add_argument("--token-file", metavar="FILE", help="file with the forwarder's bearer token")
    g.add_argument("--tls-ca", metavar="FILE", help="CA certificate: use TLS, verify the forwarder")


def from_args(args: argparse.Namespace) -> ForwarderSink | None:
    """A started ForwarderSink from the flags of add_arguments, or None without --forwarder."""
    addr = getattr(args, "forwarder", None)
    if not addr:
        return None
    token = None
    if getattr(args, "token_file", None):
        try:
            token = Path(args.token_file).read_text().strip()
        except OSError as e:
            raise NodetapError(f"cannot read token file {args.token_file}: {e.strerror}") from None
    tls_ca = getattr(args, "tls_ca", None)
    if tls_ca and not os.path.exists(tls_ca):
        raise NodetapError(f"TLS CA file {tls_ca} not found; give the forwarder's CA certificate")
    return ForwarderSink(
        addr,
        spool_dir=getattr(args, "spool_dir", None),
        token=token,
        tls_ca=tls_ca,
        max_spool_bytes=getattr(args, "spool_max_bytes", 1024 * 1024 * 1024),
    )
