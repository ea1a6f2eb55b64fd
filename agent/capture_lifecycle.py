"""The parts of a syscall capture around its record loop: loading and arming the programs,
the in-kernel filters, running (every batch decoded at once), closing, and the summary.

``SyscallCapture`` (agent/capture.py) inherits them and adds the record loop: records →
connections → streams → parser → RRPairs; which connections are tracked, adopted from /proc
and reaped is agent/capture_connections.py.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

from agent import bpf_layout as L
from agent import pid_tree, procfs
from agent.capture_config import STAT_NAMES, CaptureConfig
from agent.connections import Connection, ConnectionTracker
from agent.copy_bound import copy_bound
from agent.loader import LoadOptions, Probes, load
from agent.ringbuf import CommittedCount, RingBufferReader
from agent.streams import Chunk
from agent.tls import coverage as tls_coverage

log = logging.getLogger(__name__)


class CaptureLifecycle:
    """Start, run, close and report on a capture; the record loop is the subclass's."""

    def __init__(self, cfg: CaptureConfig) -> None:
        self.cfg = cfg
        self.stats: dict[str, int] = dict.fromkeys(STAT_NAMES, 0)
        self.tracker = ConnectionTracker(cfg.max_conns)
        self.probes: Probes | None = None
        self._pids: list[int] = []  # cfg.pids and their descendants at start
        self.reader: RingBufferReader | None = None
        self.backlog_bytes = 0  # in the ring before the last read (agent/backlog_ledger.py)
        self._ring: RingBufferReader | None = None
        self._committed: CommittedCount | None = None
        self._conns_map: object = None
        self._final_kernel: dict[str, int] | None = None
        self._next_agent_id = 1  # ids of connections adopted from /proc (AGENT_CONN_ID_BIT)
        self.tls: tls_coverage.TlsCoverage | None = None  # with cfg.tls (agent/tls/)
        # tgids of the connections opened lately, drained by the TLS coverage (its young
        # processes may open, use and close their connections between two of its looks)
        self.opened_tgids: deque[int] | None = None

    if TYPE_CHECKING:  # the record loop's side (agent/capture.py, capture_connections.py)

        def poll(self, max_bytes: int = 64 << 20) -> int: ...
        def _feed_chunk(self, conn: Connection, d: int, ch: Chunk) -> None: ...
        def _finish(self, conn: Connection, ts: int) -> None: ...
        def _release(self, conn: Connection) -> None: ...
        def _age_parked(self, force: bool = False) -> None: ...
        def _mark_tgid(self, pid: int) -> None: ...
        def _adopt_existing(self, established: list[procfs.ExistingConn]) -> None: ...
        def _kernel_gaps(self, conn: Connection, ts: int) -> None: ...
        def _reap_dead(self) -> None: ...
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
        ) -> Connection: ...

        _dec: Any  # the Rust core, when it decodes (agent/capture_core.py)

        def _core_close(self) -> None: ...
        def _core_kernel_offsets(self, conn: Connection, cur: Any) -> None: ...

    # ---- start and stop ----

    def start(self) -> None:
        probes = load(
            LoadOptions(
                ringbuf_pages=self.cfg.ringbuf_pages,
                max_conns=self.cfg.max_conns,
                typed_regs=self.cfg.typed_regs,
                addr_at_read=self.cfg.addr_at_read,
                tls=self.cfg.tls,
            )
        )
        self.probes = probes
        try:
            self._configure(probes)
            self._committed = CommittedCount(probes.committed_fd())
            self.reader = self._ring = RingBufferReader(
                probes.ringbuf_fd(), probes.ringbuf_size, self._committed
            )
            probes.set_config(L.NT_CFG_ARMED, 1)
            scan = procfs.scan_sockets(self._pids or None, skip=os.getpid())
            # a server already blocked in accept() has no entry the programs saw: mark
            # listeners so that their accept() exits are looked at (bpf/common.h)
            for pid in scan.listening_pids:
                self._mark_tgid(pid)
            if self.cfg.preexisting:
                self._adopt_existing(scan.established)
            if self.cfg.tls:
                self.tls = tls_coverage.for_capture(self)
        except BaseException:
            if self.tls is not None:
                self.tls.close()
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
        probes.set_config(L.NT_CFG_COPY_BOUND, copy_bound(self.cfg.max_body))
        self._conns_map = probes.table("conns")
        # -p PID: the process and its descendants (a master and its workers); the kernel
        # side adds the children forked from now on (bpf/conn_lifecycle.c)
        self._pids = pid_tree.with_descendants(self.cfg.pids) if self.cfg.pids else []
        if self._pids:
            t = probes.table("filter_pids")
            for pid in self._pids:
                t[ctypes.c_uint32(pid)] = ctypes.c_uint8(1)
            probes.set_config(L.NT_CFG_FILTER_PIDS, 1)
        if self.cfg.ports:
            t = probes.table("filter_ports")
            for port in self.cfg.ports:
                t[ctypes.c_uint16(port)] = ctypes.c_uint8(1)
            probes.set_config(L.NT_CFG_FILTER_PORTS, 1)
        if self.cfg.cgroup_ids or self.cfg.cgroup_filter:
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
            while self.poll():  # what the ring still holds (a poll reads 64 MiB at most)
                pass
            now = time.monotonic_ns()
            for conn in self.tracker:
                self.tracker.pop(conn.conn_id)
                self._kernel_gaps(conn, now)
                self._finish(conn, now)
                if conn.noaddr:
                    self._release(conn)
            self._age_parked(force=True)
            if self._dec is not None:
                self._core_close()
        finally:
            if self.tls is not None:
                self.tls.close()  # its uprobes first
            self._final_kernel = self.probes.counters()
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
        """Decode until stop is set, duration has passed or count RRPairs were emitted."""
        deadline = time.monotonic() + duration if duration else None
        while not stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                return
            self.backlog_bytes = self._backlog()
            n = self.poll()
            if count is not None and self.stats["rrpairs"] >= count:
                return
            if n < 64:
                stop.wait(self.cfg.poll_interval)

    def _backlog(self) -> int:
        """Bytes of records in the ring buffer not read yet."""
        return self.reader.pending() if self.reader is not None else 0

    def ring_backlog(self) -> int:
        """Bytes of records that waited in the ring buffer before the last read (safe from
        any thread: the ring itself may be unmapped by then)."""
        return self.backlog_bytes

    # ---- reporting ----

    def kernel_counters(self) -> dict[str, int]:
        if self.probes is not None:
            return self.probes.counters()
        return self._final_kernel or dict.fromkeys(L.COUNTER_NAMES, 0)

    def summary(self, kernel: dict[str, int] | None = None) -> dict[str, int]:
        out = dict(self.stats)
        out.update(kernel if kernel is not None else self.kernel_counters())
        out["conns_open"] = len(self.tracker)
        if self.tls is not None:
            out.update(self.tls.summary())
        out["ring_backlog_bytes"] = self._backlog()
        return out
