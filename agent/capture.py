"""The live syscall capture: ring-buffer records in, RRPairs out.

Glues the loader (BPF programs), the bulk ring-buffer reader, the connection tracker,
the ordered streams and the HTTP/1.x stitcher. Everything that can lose data is
counted: in the kernel (per-CPU counters, read on demand) and here (`stats`).
"""

from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent import bpf_layout as L
from agent import procfs
from agent.connections import Connection, ConnectionTracker
from agent.deferred import DeferredDecode, IdleGate, idle_priority
from agent.loader import LoadOptions, Probes, load
from agent.protocols.http1 import Http1Stitcher
from agent.protocols.http1.types import HttpExchange
from agent.ring_spool import RingSpoolReader
from agent.ringbuf import CommittedCount, RingBufferReader
from agent.rrpairs import CapturedExchange, ConnContext, RRPairIds, build_http_rrpair
from agent.streams import Chunk
from nodetap.v1 import rrpair_pb2 as pb

log = logging.getLogger(__name__)

Emit = Callable[[pb.RRPair], None]

_BPF_NOEXIST = 1

# User-space counters (the kernel's are in bpf_layout.COUNTER_NAMES).
STAT_NAMES = (
    "records",
    "control_records",
    "gap_records",
    "conns_tracked",
    "conns_preexisting",
    "conns_not_http",
    "conns_upgraded",
    "conns_filtered_user",
    "conns_process_gone",
    "orphan_records",
    "records_untracked",
    "conns_noaddr",
    "conns_noaddr_resolved",
    "stream_gaps",
    "stream_gap_bytes",
    "stream_duplicate_bytes",
    "rrpairs",
    "rrpairs_incomplete",
    "rrpairs_gap",
    "rrpairs_truncated",
    "defer_spooled_bytes",
    "defer_refusals",
    "defer_extents",
    "defer_unwalked_extents",
    "defer_drain_failures",
    "defer_peak_backlog_bytes",
    "defer_paused_ms",
    "drop_defer_discarded_bytes",
)


@dataclass
class CaptureConfig:
    """What to capture and how."""

    pids: list[int] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)
    cgroup_ids: list[int] = field(default_factory=list)
    max_body: int = 1 << 20
    node: str = field(default_factory=lambda: os.environ.get("NODE_NAME") or socket.gethostname())
    poll_interval: float = 0.01
    ringbuf_pages: int = 4096
    max_conns: int = 65536
    preexisting: bool = True
    idle_check_interval: float = 5.0
    # pid -> who the process is (agent.enrich.Enricher.enrich); called once per connection
    enrich: Callable[[int], Any] | None = None
    agent_version: str = ""
    # deferred decoding (agent/deferred.py): > 0 starts a drain process that spools the
    # ring buffer into at most this many bytes, and decodes at idle priority
    spool_max: int = 0
    spool_dir: str | None = None  # where the spool directory is made (default: $TMPDIR)
    idle_decode: bool = True  # with a spool: decode at SCHED_IDLE
    typed_regs: bool | None = None  # agent.loader.LoadOptions.typed_regs


class SyscallCapture:
    """Loads the probes, drains the ring buffer and emits RRPairs."""

    def __init__(
        self,
        cfg: CaptureConfig,
        emit: Emit | None = None,
        on_exchange: Callable[[CapturedExchange], None] | None = None,
    ) -> None:
        """Emit each RRPair as a protobuf message (`emit`), or as a CapturedExchange
        (`on_exchange`: built only in the forms the receiver asks for)."""
        self.cfg = cfg
        self.emit = emit
        self.on_exchange = on_exchange
        self.stats: dict[str, int] = dict.fromkeys(STAT_NAMES, 0)
        self.tracker = ConnectionTracker(cfg.max_conns)
        self.ids = RRPairIds()
        self.probes: Probes | None = None
        self.reader: RingBufferReader | RingSpoolReader | None = None
        self._ring: RingBufferReader | None = None
        self._committed: CommittedCount | None = None
        self._deferred: DeferredDecode | None = None
        self._gate: IdleGate | None = None
        # set while close() decodes the deferred backlog: discard the rest (counted)
        self.abandon = threading.Event()
        # called with (bytes decoded, bytes in all) while close() decodes a backlog
        self.progress: Callable[[int, int], None] | None = None
        self._conns_map: object = None
        self._holey: set[Connection] = set()
        self._next_agent_id = 1
        self._mono_to_wall = time.time_ns() - time.monotonic_ns()
        self._last_idle_check = time.monotonic()
        self._ports = set(cfg.ports)
        self._lock = threading.Lock()
        self._final_kernel: dict[str, int] | None = None
        # ids of connections the agent stopped tracking (not HTTP, upgraded, filtered):
        # their records still in the ring are skipped without a /proc lookup
        self._untracked: dict[int, None] = {}
        # closed connections without addresses, waiting (a drain or two) for NT_EV_ADDR
        self._parked: dict[int, tuple[Connection, int]] = {}

    # ---- start and stop ----

    def start(self) -> None:
        probes = load(
            LoadOptions(
                ringbuf_pages=self.cfg.ringbuf_pages,
                max_conns=self.cfg.max_conns,
                typed_regs=self.cfg.typed_regs,
            )
        )
        self.probes = probes
        try:
            self._configure(probes)
            self._committed = CommittedCount(probes.committed_fd())
            self.reader = self._ring = RingBufferReader(
                probes.ringbuf_fd(), probes.ringbuf_size, self._committed
            )
            if self.cfg.spool_max > 0:
                self._deferred = DeferredDecode(
                    probes.ringbuf_fd(),
                    probes.ringbuf_size,
                    self.cfg.spool_max,
                    self.cfg.spool_dir,
                    committed_fd=probes.committed_fd(),
                )
                self.reader = self._deferred.reader
            probes.set_config(L.NT_CFG_ARMED, 1)
            scan = procfs.scan_sockets(self.cfg.pids or None, skip=os.getpid())
            # a server already blocked in accept() has no entry the programs saw: mark
            # listeners so that their accept() exits are looked at (bpf/common.h)
            for pid in scan.listening_pids:
                self._mark_tgid(pid)
            if self.cfg.preexisting:
                self._adopt_existing(scan.established)
        except BaseException:
            self._end_deferred()
            self._unmap()
            probes.close()
            self.probes = None
            raise

    def _unmap(self) -> None:
        """Unmap the ring buffer and the committed count (before the probes are closed)."""
        if self._ring is not None:
            self._ring.close()
            self._ring = self.reader = None
        if self._committed is not None:
            self._committed.close()
            self._committed = None

    def _configure(self, probes: Probes) -> None:
        probes.set_config(L.NT_CFG_SELF_TGID, os.getpid())
        self._conns_map = probes.table("conns")
        if self.cfg.pids:
            t = probes.table("filter_pids")
            for pid in self.cfg.pids:
                t[ctypes.c_uint32(pid)] = ctypes.c_uint8(1)
            probes.set_config(L.NT_CFG_FILTER_PIDS, 1)
        if self.cfg.ports:
            t = probes.table("filter_ports")
            for port in self.cfg.ports:
                t[ctypes.c_uint16(port)] = ctypes.c_uint8(1)
            probes.set_config(L.NT_CFG_FILTER_PORTS, 1)
        if self.cfg.cgroup_ids:
            self.set_cgroup_filter(self.cfg.cgroup_ids)

    def set_cgroup_filter(self, cgroup_ids: list[int] | set[int] | None) -> None:
        """Capture only processes in these cgroup v2 ids (None: no cgroup filter).
        Applies to connections opened from now on."""
        assert self.probes is not None
        t = self.probes.table("filter_cgroups")
        wanted = set(cgroup_ids or ())
        for key in list(t.keys()):
            if key.value not in wanted:
                del t[key]
        for cg in wanted:
            t[ctypes.c_uint64(cg)] = ctypes.c_uint8(1)
        self.probes.set_config(L.NT_CFG_FILTER_CGROUPS, 1 if cgroup_ids is not None else 0)

    def close(self) -> None:
        """Drain what is left, finish every open connection, detach the probes."""
        if self.probes is None:
            return
        try:
            self.probes.set_config(L.NT_CFG_ARMED, 0)
            if self._deferred is not None:
                # the drain process moves what the ring holds, then the spool is read out
                counters = self._deferred.stop()
                self.stats["defer_spooled_bytes"] = counters.get("bytes", 0)
                self.stats["defer_refusals"] = counters.get("refusals", 0)
                self.stats["defer_extents"] = counters.get("extents", 0)
                self.stats["defer_unwalked_extents"] = counters.get("unwalked", 0)
                self._decode_backlog()
                self.reader = self._ring  # what a full spool refused is still there
            while not self.abandon.is_set() and self.poll():  # a poll reads 64 MiB at most
                pass
            now = time.monotonic_ns()
            for conn in self.tracker:
                self.tracker.pop(conn.conn_id)
                self._kernel_gaps(conn, now)
                self._finish(conn, now)
                if conn.noaddr:
                    self._release(conn)
            self._age_parked(force=True)
        finally:
            self._final_kernel = self.probes.counters()
            self._end_deferred()
            self._unmap()
            self.probes.close()
            self.probes = None

    @property
    def tracepoints(self) -> list[str]:
        return self.probes.tracepoints if self.probes else []

    @property
    def syscalls(self) -> list[str]:
        return self.probes.syscalls if self.probes else []

    # ---- the loop ----

    def run(
        self,
        stop: threading.Event,
        duration: float | None = None,
        count: int | None = None,
    ) -> None:
        """Drain until stop is set, duration has passed or count RRPairs were emitted."""
        deadline = time.monotonic() + duration if duration else None
        deferred = self._deferred is not None and self.cfg.idle_decode
        gate = self._gate = IdleGate() if deferred else None
        try:
            with idle_priority(deferred):
                self._loop(stop, deadline, count, gate)
        finally:
            self._gate = None
            if gate is not None:
                self.stats["defer_paused_ms"] += int(gate.paused_s * 1000)

    def _loop(
        self,
        stop: threading.Event,
        deadline: float | None,
        count: int | None,
        gate: IdleGate | None,
    ) -> None:
        while not stop.is_set():
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                return
            if self._deferred is not None:
                if not self._deferred.alive():
                    self._drain_failed()
                    continue
                backlog = self._deferred.reader.pending()
                if backlog > self.stats["defer_peak_backlog_bytes"]:
                    self.stats["defer_peak_backlog_bytes"] = backlog
                if gate is not None and not gate.allows(
                    backlog, pressure=backlog > self._deferred.max_bytes // 2
                ):
                    stop.wait(gate.interval)  # the node is busy: decode later
                    continue
            n = self.poll()
            if count is not None and self.stats["rrpairs"] >= count:
                return
            if n < 64:
                stop.wait(self.cfg.poll_interval)

    def _decode_backlog(self) -> None:
        """Decode what the spool still holds (reporting progress), unless abandoned: then
        the rest is counted as discarded."""
        total = self._backlog()
        next_report = time.monotonic() + 1.0
        while not self.abandon.is_set() and self.poll(4 << 20):
            if self.progress is not None and time.monotonic() >= next_report:
                next_report += 2.0
                self.progress(total - self._backlog(), total)
        if self.abandon.is_set():
            self.stats["drop_defer_discarded_bytes"] += self._backlog()

    def _drain_failed(self) -> None:
        """The drain process died: read what it spooled, then the ring buffer directly."""
        assert self._deferred is not None
        log.warning(
            "the spool drain process ended (status %s); decoding from the ring buffer",
            self._deferred.proc.returncode,
        )
        self.stats["defer_drain_failures"] += 1
        self._deferred.stop()
        while self.poll():
            pass
        self._end_deferred()
        self.reader = self._ring

    def _end_deferred(self) -> None:
        if self._deferred is not None:
            self._deferred.stop()
            self._deferred.remove()
            self._deferred = None

    def poll(self, max_bytes: int = 64 << 20) -> int:
        """Process the committed records (about max_bytes of them at most); return how
        many there were."""
        reader = self.reader
        if reader is None:
            return 0
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

    def _backlog(self) -> int:
        """Bytes of records not read yet (in the spool and in the ring)."""
        n = self.reader.pending() if self.reader is not None else 0
        if self._deferred is not None and self._ring is not None:
            n += self._ring.pending()
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
            stream = conn.streams[d]
            data = rec[L.NT_DATA_HDR_SIZE : L.NT_DATA_HDR_SIZE + ln].tobytes()
            if off == stream.next_offset and not stream.pending_bytes:
                stream.next_offset += ln
                self._feed(conn, d, data, ln, ts)
            else:
                for ch in stream.push(off, data, ts):
                    self._feed_chunk(conn, d, ch)
                if stream.pending_bytes:
                    self._holey.add(conn)
        elif kind == L.NT_EV_GAP:
            _, d, _sc, ln, cid, ts, off, _tgid, _fd = L.DATA_HDR.unpack_from(rec)
            self.stats["gap_records"] += 1
            conn = self.tracker.get(cid)
            if conn is None:
                return
            stream = conn.streams[d]
            chunks = stream.gap_to(off + ln, ts) if ln else stream.unknown_gap(ts)
            for ch in chunks:
                self._feed_chunk(conn, d, ch)
        elif kind == L.NT_EV_OPEN:
            self.stats["control_records"] += 1
            self._on_open(L.CONN_EVENT.unpack_from(rec))
        elif kind == L.NT_EV_ADDR:
            self.stats["control_records"] += 1
            self._on_addr(L.CONN_EVENT.unpack_from(rec))
        elif kind == L.NT_EV_CLOSE:
            self.stats["control_records"] += 1
            fields = L.CONN_EVENT.unpack_from(rec)
            conn = self.tracker.pop(fields[4])
            if conn is not None:
                self._holey.discard(conn)
                ts = fields[5]
                for d in (0, 1):
                    for ch in conn.streams[d].gap_to(fields[11 + d], ts):
                        self._feed_chunk(conn, d, ch)
                self._finish(conn, ts)
                if conn.noaddr:
                    self._parked[conn.conn_id] = (conn, 0)

    def _on_addr(self, f: tuple[Any, ...]) -> None:
        cid, role, lport, rport, laddr, raddr = f[4], f[1], f[7], f[8], f[9], f[10]
        parked = self._parked.pop(cid, None)
        conn = parked[0] if parked else self.tracker.get(cid)
        if conn is None:
            return
        conn.set_local(procfs.normalize_ip(laddr), lport)
        if role == L.NT_ROLE_SERVER and rport:
            conn.set_remote(procfs.normalize_ip(raddr), rport)
        if conn.noaddr:
            self.stats["conns_noaddr_resolved"] += 1
            self._release(conn)

    def _release(self, conn: Connection) -> None:
        """Emit what a connection without addresses held back, now that its addresses are
        known (or will not be: then it passes a port filter only on its local port)."""
        conn.noaddr = False
        held, conn.held = conn.held, []
        if not self._port_wanted(conn.local_port, conn.remote_port):
            self.stats["conns_filtered_user"] += 1
            if not conn.dead:
                self._untrack(conn)
            return
        for ex in held:
            self._emit(conn, ex)

    def _age_parked(self, force: bool = False) -> None:
        for cid, (conn, age) in list(self._parked.items()):
            if force or age >= 1:
                del self._parked[cid]
                self._release(conn)
            else:
                self._parked[cid] = (conn, age + 1)

    def _feed_chunk(self, conn: Connection, d: int, ch: Chunk) -> None:
        if ch.data is None:
            self.stats["stream_gaps"] += 1
            self.stats["stream_gap_bytes"] += ch.size
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
        if conn.ctx is not None:
            return conn.ctx
        ctx = conn.context(self.cfg.node)
        ctx.agent_version = self.cfg.agent_version
        if self.cfg.enrich is not None:
            try:
                info = self.cfg.enrich(conn.tgid)
            except Exception:  # enrichment must never cost a capture
                log.debug("enrichment of pid %d failed", conn.tgid, exc_info=True)
            else:  # who the process is; pid and comm as the programs saw them
                ctx.who = dataclasses.replace(
                    info, node=info.node or ctx.who.node, pid=ctx.who.pid, comm=ctx.who.comm
                )
        return ctx

    def _emit(self, conn: Connection, ex: HttpExchange) -> None:
        if conn.noaddr:
            conn.held.append(ex)
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

    def _end_of_batch(self, conn: Connection) -> None:
        for d in (0, 1):
            for ch in conn.streams[d].end_of_batch():
                self._feed_chunk(conn, d, ch)
        if not (conn.streams[0].pending_bytes or conn.streams[1].pending_bytes):
            self._holey.discard(conn)

    def _finish(self, conn: Connection, ts: int) -> None:
        """The connection ended (or the capture stops): emit what it still holds."""
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
            self._emit(conn, ex)

    # ---- connections ----

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
            stitcher=Http1Stitcher(max_body=self.cfg.max_body, resync=preexisting),
        )
        if preexisting:
            conn.flags.add("preexisting")
        self.tracker.add(conn)
        self.stats["conns_tracked"] += 1
        return conn

    def _port_wanted(self, *ports: int) -> bool:
        return not self._ports or any(p in self._ports for p in ports)

    def _on_open(self, f: tuple[Any, ...]) -> None:
        _, role, family, tgid, cid, ts, fd, lport, rport, laddr, raddr, _o0, _o1, cg, comm = f
        local = (procfs.normalize_ip(laddr), lport)
        remote = (procfs.normalize_ip(raddr), rport)
        noaddr = False
        if not family or not lport:
            # accept() without a sockaddr, or a local address the programs did not see
            sock = procfs.lookup_fd(tgid, fd)
            if sock is not None:
                local = (sock.local_ip, sock.local_port)
                remote = (sock.remote_ip, sock.remote_port)
                if not self._port_wanted(local[1], remote[1]):
                    self.stats["conns_filtered_user"] += 1
                    self._untrack_key(tgid, fd, cid)
                    return
            else:
                # already closed (or not TCP): its close() will report the addresses
                noaddr = True
                self.stats["conns_noaddr"] += 1
        conn = self._new_conn(
            cid,
            tgid,
            fd,
            role,
            local,
            remote,
            comm.rstrip(b"\0").decode("utf-8", "replace"),
            cg,
            ts,
        )
        conn.noaddr = noaddr

    def _adopt_orphan(self, cid: int, tgid: int, fd: int, ts: int) -> Connection | None:
        """Data of a connection whose OPEN record was lost (ring buffer full): learn
        its addresses from /proc, or give up and count the record."""
        sock = procfs.lookup_fd(tgid, fd)
        if sock is None:
            self.stats["orphan_records"] += 1
            self._untrack_key(tgid, fd, cid)
            return None
        listening = procfs.listening_ports(procfs.read_tcp_table(tgid))
        role = L.NT_ROLE_SERVER if sock.local_port in listening else L.NT_ROLE_CLIENT
        conn = self._new_conn(
            cid,
            tgid,
            fd,
            role,
            (sock.local_ip, sock.local_port),
            (sock.remote_ip, sock.remote_port),
            procfs.comm(tgid),
            0,
            ts,
        )
        conn.flags.add("gap")
        return conn

    def _mark_tgid(self, pid: int) -> None:
        """Make the programs look at this process's syscalls (bpf/common.h: tracked_tgids)."""
        assert self.probes is not None
        slot = ctypes.c_int(pid & (L.NT_TGID_SLOTS - 1))
        self.probes.table("tracked_tgids")[slot] = ctypes.c_uint8(1)

    def _adopt_existing(self, established: list[procfs.ExistingConn]) -> None:
        """Track connections that were open before the capture started."""
        assert self._conns_map is not None
        from bcc import libbcc

        cg_mount = procfs.cgroup2_mount() if self.cfg.cgroup_ids else None
        wanted_cg = set(self.cfg.cgroup_ids)
        now = time.monotonic_ns()
        fd_map = self._conns_map.map_fd  # type: ignore[attr-defined]
        for ex in established:
            s = ex.sock
            if not self._port_wanted(s.local_port, s.remote_port):
                continue
            if wanted_cg and procfs.cgroup2_id(ex.pid, cg_mount) not in wanted_cg:
                continue
            cid = L.AGENT_CONN_ID_BIT | self._next_agent_id
            self._next_agent_id += 1
            role = L.NT_ROLE_SERVER if ex.server else L.NT_ROLE_CLIENT
            self._mark_tgid(ex.pid)  # the data handlers skip processes without the mark
            key = ctypes.c_uint64((ex.pid << 32) | ex.fd)
            leaf = L.NtConn(id=cid, role=role, family=s.family)
            rc = libbcc.lib.bpf_update_elem(
                fd_map, ctypes.byref(key), ctypes.byref(leaf), _BPF_NOEXIST
            )
            if rc != 0:
                continue  # accepted after arming: the programs track it already
            self._new_conn(
                cid,
                ex.pid,
                ex.fd,
                role,
                (s.local_ip, s.local_port),
                (s.remote_ip, s.remote_port),
                procfs.comm(ex.pid),
                0,
                now,
                preexisting=True,
            )
            self.stats["conns_preexisting"] += 1

    def _untrack_key(self, tgid: int, fd: int, cid: int) -> None:
        """Stop the programs copying bytes of (tgid, fd), if it is still connection cid."""
        self._untracked[cid] = None
        if len(self._untracked) > self.cfg.max_conns:
            del self._untracked[next(iter(self._untracked))]
        if self._kernel_entry(tgid, fd, cid) is not None:
            with contextlib.suppress(KeyError):
                del self._conns_map[ctypes.c_uint64((tgid << 32) | fd)]  # type: ignore[attr-defined]

    def _kernel_entry(self, tgid: int, fd: int, cid: int) -> Any:
        """The programs' entry for (tgid, fd) if it is still connection cid, else None."""
        table = self._conns_map
        if table is None:
            return None
        try:
            cur = table[ctypes.c_uint64((tgid << 32) | fd)]  # type: ignore[index]
        except KeyError:
            return None
        return cur if cur.id == cid else None

    def _untrack(self, conn: Connection) -> None:
        conn.dead = True
        self._untrack_key(conn.tgid, conn.fd, conn.conn_id)
        self.tracker.pop(conn.conn_id)
        self._holey.discard(conn)

    def _kernel_gaps(self, conn: Connection, ts: int) -> None:
        """A connection ends without a CLOSE record (its process exited, or the capture
        stops): bytes the kernel counted on it that never arrived (records lost to a full
        ring buffer) are gaps, as a CLOSE record's offsets would have shown."""
        cur = self._kernel_entry(conn.tgid, conn.fd, conn.conn_id)
        if cur is None or cur.flags & L.NT_CONN_MUTED:
            return
        for d in (0, 1):
            for ch in conn.streams[d].gap_to(int(cur.off[d]), ts):
                self._feed_chunk(conn, d, ch)

    def _reap_dead(self) -> None:
        """Connections of processes that exited without close() (exit closes fds
        without a close syscall): finish them and free their kernel entries."""
        now = time.monotonic_ns()
        for conn in self.tracker.idle(now, int(self.cfg.idle_check_interval * 1e9)):
            if procfs.process_alive(conn.tgid) and procfs.socket_inode(conn.tgid, conn.fd):
                continue
            self.stats["conns_process_gone"] += 1
            self._kernel_gaps(conn, now)
            self._untrack_key(conn.tgid, conn.fd, conn.conn_id)
            self.tracker.pop(conn.conn_id)
            self._finish(conn, now)

    # ---- reporting ----

    def kernel_counters(self) -> dict[str, int]:
        if self.probes is not None:
            return self.probes.counters()
        return self._final_kernel or dict.fromkeys(L.COUNTER_NAMES, 0)

    def summary(self, kernel: dict[str, int] | None = None) -> dict[str, int]:
        out = dict(self.stats)
        out.update(kernel if kernel is not None else self.kernel_counters())
        out["conns_open"] = len(self.tracker)
        out["defer_backlog_bytes"] = self._backlog() if self._deferred is not None else 0
        if self._gate is not None:
            out["defer_paused_ms"] += int(self._gate.paused_s * 1000)
        return out
