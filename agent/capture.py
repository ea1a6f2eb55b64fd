"""The live syscall capture: ring-buffer records in, RRPairs out.

Glues the loader (BPF programs), the bulk ring-buffer reader, the connection tracker,
the ordered streams and the HTTP/1.x stitcher. Everything that can lose data is
counted: in the kernel (per-CPU counters, read on demand) and here (`stats`).

This module is the record loop (records → connections → streams → parser → RRPairs);
starting, running, closing and the summary are agent/capture_lifecycle.py, which
connections are tracked, adopted and untracked agent/capture_connections.py, the settings
and counter names agent/capture_config.py.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from agent import bpf_layout as L
from agent import gap_marks
from agent.capture_config import STAT_NAMES, CaptureConfig
from agent.capture_core import CoreRecords, unused_stitcher
from agent.capture_uncopied import UncopiedBytes
from agent.conn_context import connection_context
from agent.connections import Connection
from agent.copy_bound import copy_bound
from agent.protocols.http1 import Http1Stitcher
from agent.protocols.http1.types import HttpExchange
from agent.ringbuf import iter_records
from agent.rrpairs import CapturedExchange, ConnContext, RRPairIds, build_http_rrpair
from agent.sendfile_bodies import FileRanges
from agent.streams import Chunk
from agent.tls import records as tls_records
from nodetap.v1 import rrpair_pb2 as pb

if TYPE_CHECKING:
    from agent.rules import RuleEngine

__all__ = ["STAT_NAMES", "CaptureConfig", "SyscallCapture"]

log = logging.getLogger(__name__)

Emit = Callable[[pb.RRPair], None]


class SyscallCapture(CoreRecords, UncopiedBytes):
    """Loads the probes, drains the ring buffer and emits RRPairs."""

    def __init__(
        self,
        cfg: CaptureConfig,
        emit: Emit | None = None,
        on_exchange: Callable[[CapturedExchange], None] | None = None,
        rules: RuleEngine | None = None,
    ) -> None:
        """Emit each RRPair as a protobuf message (`emit`), or as a CapturedExchange
        (`on_exchange`: built only in the forms the receiver asks for).

        With ``cfg.decoder == "core"`` the Rust core decodes the records (agent/capture_core.py)
        at once; it also runs the edge ``rules`` on each RRPair before
        encoding it (agent/capture_rules.py). The Python decoder leaves rules to the
        pipeline (agent/pipeline.py)."""
        super().__init__(cfg)
        self.emit = emit
        self.on_exchange = on_exchange
        self.ids = RRPairIds()
        self._holey: set[Connection] = set()
        self._mono_to_wall = time.time_ns() - time.monotonic_ns()
        self._last_idle_check = time.monotonic()
        self._ports = set(cfg.ports)
        self._lock = threading.Lock()
        # ids of connections the agent stopped tracking (not HTTP, upgraded, filtered):
        # their records still in the ring are skipped without a /proc lookup
        self._untracked: dict[int, None] = {}
        # closed connections without addresses, waiting (a drain or two) for NT_EV_ADDR
        self._parked: dict[int, tuple[Connection, int]] = {}
        # sendfile's bytes, read back from files (agent/sendfile_bodies.py)
        self._files = FileRanges(copy_bound(cfg.max_body))
        if self.cfg.decoder == "core":
            self._core_init(self.ids.next().rsplit("-", 1)[0], rules)
        elif rules is not None:
            raise ValueError("edge rules run inside the capture with the core decoder only")

    def close(self) -> None:
        super().close()
        self._files.close()  # the senders' pidfds (agent/sendfile_bodies.py)

    def poll(self, max_bytes: int = 64 << 20) -> int:
        """Process the committed records (about max_bytes of them at most); return how
        many there were."""
        reader = self.reader
        if reader is None:
            return 0
        if self._dec is not None:
            return self._poll_core(max_bytes)
        n = 0
        with self._lock:
            for rec in reader.read(max_bytes):
                n += 1
                self._handle(rec)
            self.stats["records"] += n
            if self._holey:
                for conn in list(self._holey):
                    self._end_of_batch(conn)
            if self._parked:
                self._age_parked()
            now = time.monotonic()
            # Reap only when caught up: while records are still queued, a connection that
            # looks idle may just have its records (and its close) waiting in the ring.
            if now - self._last_idle_check > self.cfg.idle_check_interval and not self._backlog():
                self._last_idle_check = now
                self._reap_dead()
        return n

    def feed_batch(self, blob: bytes) -> int:
        """Decode one batch of ring-buffer-format bytes (what poll() reads), with either
        decoder; return how many records it held."""
        if self._dec is not None:
            return self._core_feed(blob)
        n = 0
        for rec in iter_records(memoryview(blob)):
            n += 1
            self._handle(rec)
        self.stats["records"] += n
        for conn in list(self._holey):
            self._end_of_batch(conn)
        return n

    def _poll_core(self, max_bytes: int) -> int:
        blob = self.reader.read_extent(max_bytes)  # type: ignore[union-attr]
        with self._lock:
            n = self._core_feed(blob) if blob is not None else 0
            if self._parked:
                self._age_parked()
            now = time.monotonic()
            if now - self._last_idle_check > self.cfg.idle_check_interval and not self._backlog():
                self._last_idle_check = now
                self._reap_dead()
        return n

    # ---- records ----

    def _handle(self, rec: memoryview) -> None:
        kind = rec[0]
        if kind == L.NT_EV_DATA:
            _, d, _sc, ln, cid, ts, off, tgid, fd = L.DATA_HDR.unpack_from(rec)
            conn = self.tracker.get(cid)
            if conn is None:
                if cid in self._untracked:
                    self.stats["records_untracked"] += 1
                    return
                conn = self._adopt_orphan(cid, tgid, fd, ts)
                if conn is None:
                    return
            conn.last_ns = ts
            if self._holey and conn in self._holey:
                self._flush_other(conn, d)
            stream = conn.streams[d]
            data = rec[L.NT_DATA_HDR_SIZE : L.NT_DATA_HDR_SIZE + ln].tobytes()
            if off == stream.next_offset and not stream.waiting:
                stream.next_offset += ln
                self._feed(conn, d, data, ln, ts)
            else:
                for ch in stream.push(off, data, ts):
                    self._feed_chunk(conn, d, ch)
                if stream.waiting:
                    self._holey.add(conn)
        elif kind == L.NT_EV_GAP:
            _, d, sc, ln, cid, ts, off, _tgid, _fd = L.DATA_HDR.unpack_from(rec)
            self.stats["gap_records"] += 1
            conn = self.tracker.get(cid)
            if conn is None:
                return
            if conn in self._holey:
                self._flush_other(conn, d)
            stream = conn.streams[d]
            if sc & L.NT_GAP_BOUND and self._skip_in_order(conn, d, off, ln, ts):
                return
            chunks = stream.push_gap(off, ln, ts) if ln else stream.unknown_gap(ts)
            for ch in chunks:
                self._feed_chunk(conn, d, ch)
            if stream.waiting:
                self._holey.add(conn)
        elif kind == L.NT_EV_SENDFILE:
            self._on_sendfile(rec)
        elif kind == L.NT_EV_OPEN:
            self.stats["control_records"] += 1
            self._on_open(L.CONN_EVENT.unpack_from(rec))
        elif kind == L.NT_EV_ADDR:
            self.stats["control_records"] += 1
            self._on_addr(L.CONN_EVENT.unpack_from(rec))
        elif kind >= L.NT_EV_TLS_DATA:  # TLS plaintext (agent/tls/records.py)
            plain = tls_records.as_plain(self, rec)
            if plain is not None:
                self._handle(memoryview(plain))
        elif kind == L.NT_EV_CLOSE:
            self.stats["control_records"] += 1
            fields = L.CONN_EVENT.unpack_from(rec)
            conn = self.tracker.pop(fields[4])
            if conn is not None:
                self._holey.discard(conn)
                ts = fields[5]
                for d in (conn.req_dir, conn.req_dir ^ 1):  # requests first (causal order)
                    # records queued behind a hole are delivered, not skipped with it
                    for ch in conn.streams[d].close_at(fields[11 + d], ts):
                        self._feed_chunk(conn, d, ch)
                self._finish(conn, ts)
                if conn.noaddr:
                    self._parked[conn.conn_id] = (conn, 0)

    def _feed_chunk(self, conn: Connection, d: int, ch: Chunk) -> None:
        if ch.data is None:
            self.stats["stream_gaps"] += 1
            self.stats["stream_gap_bytes"] += ch.size
            gap_marks.note_gap(conn, d, ch.ts_ns + self._mono_to_wall)
        self._feed(conn, d, ch.data, ch.size, ch.ts_ns)

    def _feed(self, conn: Connection, d: int, data: bytes | None, size: int, ts: int) -> None:
        # the hot path: once per record
        if conn.dead:
            return
        st = conn.stitcher
        wall = ts + self._mono_to_wall
        if d == conn.req_dir:
            if data is None:
                exchanges = st.request_gap(size, wall)
            else:
                exchanges = st.feed_request_bytes(data, wall)
        elif data is None:
            exchanges = st.response_gap(size, wall)
        else:
            exchanges = st.feed_response_bytes(data, wall)
        if exchanges:
            for ex in exchanges:
                self._emit(conn, ex)
        if st.failed:
            self.stats["conns_not_http"] += 1
            self._untrack(conn)
        elif st.upgraded:
            self.stats["conns_upgraded"] += 1
            self._untrack(conn)

    def _context(self, conn: Connection) -> ConnContext:
        return connection_context(conn, self.cfg)

    def _emit(self, conn: Connection, ex: HttpExchange) -> None:
        gap_marks.note_exchange(conn, ex)
        if conn.noaddr:
            self._hold(conn, ex)
            return
        if self.on_exchange is not None:
            self.on_exchange(CapturedExchange(ex, self._context(conn), self.ids.next()))
        elif self.emit is not None:
            self.emit(build_http_rrpair(ex, self._context(conn), self.ids.next()))
        conn.rrpairs += 1
        s = self.stats
        s["rrpairs"] += 1
        if "incomplete" in ex.flags:
            s["rrpairs_incomplete"] += 1
        if "gap" in ex.flags:
            s["rrpairs_gap"] += 1
        if "truncated" in ex.flags:
            s["rrpairs_truncated"] += 1
        if "noaddr" in conn.flags:
            s["rrpairs_noaddr"] += 1

    def _flush_other(self, conn: Connection, d: int) -> None:
        """Bytes arrived in direction d while the other direction waits behind a hole:
        that hole cannot be filled any more (the peer answered what came after it), and
        the parser must see a request before its answer, so declare it now."""
        other = conn.streams[d ^ 1]
        while other.waiting:
            for ch in other.declare_gap():
                self._feed_chunk(conn, d ^ 1, ch)
            if conn.dead:
                return

    def _end_of_batch(self, conn: Connection) -> None:
        for d in (0, 1):
            for ch in conn.streams[d].end_of_batch():
                self._feed_chunk(conn, d, ch)
        if not (conn.streams[0].waiting or conn.streams[1].waiting):
            self._holey.discard(conn)

    def _finish(self, conn: Connection, ts: int) -> None:
        """The connection ended (or the capture stops): emit what it still holds."""
        if self._dec is not None:
            self._core_end(conn, ts)
            return
        self._holey.discard(conn)
        for d in (0, 1):
            for ch in conn.streams[d].declare_gap():
                self._feed_chunk(conn, d, ch)
            s = conn.streams[d]
            self.stats["stream_duplicate_bytes"] += s.duplicate_bytes
        st = conn.stitcher
        if st.failed or st.upgraded:
            return
        for ex in st.close(ts + self._mono_to_wall):
            gap_marks.flag_unanswered(conn, ex)
            self._emit(conn, ex)

    # ---- a new connection (with its parser) ----

    def _new_conn(
        self,
        cid: int,
        tgid: int,
        fd: int,
        role: int,
        local: tuple[str, int],
        remote: tuple[str, int],
        comm: str,
        cgroup_id: int,
        ts: int,
        preexisting: bool = False,
    ) -> Connection:
        conn = Connection(
            conn_id=cid,
            tgid=tgid,
            fd=fd,
            role=role,
            local_ip=local[0],
            local_port=local[1],
            remote_ip=remote[0],
            remote_port=remote[1],
            comm=comm,
            cgroup_id=cgroup_id,
            opened_ns=ts,
            last_ns=ts,
            stitcher=unused_stitcher()
            if self._dec is not None
            else Http1Stitcher(max_body=self.cfg.max_body, resync=preexisting),
        )
        if preexisting:
            conn.flags.add("preexisting")
        self.tracker.add(conn)
        self.stats["conns_tracked"] += 1
        if self._dec is not None:
            self._core_new_conn(conn)
        return conn
