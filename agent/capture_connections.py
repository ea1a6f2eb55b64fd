"""Which connections a syscall capture tracks: those the programs opened (OPEN records),
those adopted from /proc (open before the capture started, or whose OPEN record was lost
to a full ring buffer), those it stops tracking, and those whose process exited without
close().

``SyscallCapture`` (agent/capture.py) inherits them, through the address side
(agent/capture_addresses.py); the record loop calls them.
"""

from __future__ import annotations

import contextlib
import ctypes
import time
from typing import TYPE_CHECKING, Any

from agent import addr_lookup, procfs
from agent import bpf_layout as L
from agent.capture_lifecycle import CaptureLifecycle
from agent.connections import Connection

_BPF_NOEXIST = 1


class CaptureConnections(CaptureLifecycle):
    """Track, adopt and untrack connections; the record loop is the subclass's."""

    if TYPE_CHECKING:  # the record loop's side (agent/capture.py, capture_addresses.py)
        _untracked: dict[int, None]
        _ports: set[int]
        _holey: set[Connection]

        def _open_addresses(
            self, f: tuple[Any, ...], local: tuple[str, int], remote: tuple[str, int]
        ) -> tuple[tuple[str, int], tuple[str, int], bool]: ...

    # ---- connections the programs opened ----

    def _port_wanted(self, *ports: int) -> bool:
        return not self._ports or any(p in self._ports for p in ports)

    def _on_open(self, f: tuple[Any, ...]) -> None:
        _, role, family, tgid, cid, ts, fd, lport, rport, laddr, raddr, _o0, _o1, cg, comm = f
        local = (procfs.normalize_ip(laddr), lport)
        remote = (procfs.normalize_ip(raddr), rport)
        noaddr = False
        if not family or not lport:
            # accept() without a sockaddr, or a local address the programs did not see
            # (agent/capture_addresses.py)
            local, remote, noaddr = self._open_addresses(f, local, remote)
            if not noaddr and not self._port_wanted(local[1], remote[1]):
                self.stats["conns_filtered_user"] += 1
                self._untrack_key(tgid, fd, cid)
                if self._dec is not None:
                    self._dec.drop_conn(cid)
                return
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
        if self.opened_tgids is not None:
            self.opened_tgids.append(tgid)

    def _adopt_orphan(self, cid: int, tgid: int, fd: int, ts: int) -> Connection | None:
        """Data of a connection whose OPEN record was lost (ring buffer full): learn
        its addresses from /proc (if the fd provably still names it: agent/addr_lookup.py),
        or give up and count the record."""
        sock = addr_lookup.verified_fd_sock(
            tgid, fd, lambda: self._kernel_entry(tgid, fd, cid) is not None
        )
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
        if self._dec is not None:
            self._dec.drop_conn(conn.conn_id)
        self._untrack_key(conn.tgid, conn.fd, conn.conn_id)
        self.tracker.pop(conn.conn_id)
        self._holey.discard(conn)

    # ---- connections open before the capture started ----

    def _mark_tgid(self, pid: int) -> None:
        """Make the programs look at this process's syscalls (bpf/common.h: tracked_tgids)."""
        assert self.probes is not None
        slot = ctypes.c_int(pid & (L.NT_TGID_SLOTS - 1))
        self.probes.table("tracked_tgids")[slot] = ctypes.c_uint8(1)

    def _adopt_existing(self, established: list[procfs.ExistingConn]) -> None:
        """Track connections that were open before the capture started."""
        assert self._conns_map is not None
        from bcc import libbcc

        by_cgroup = bool(self.cfg.cgroup_ids) or self.cfg.cgroup_filter
        cg_mount = procfs.cgroup2_mount() if by_cgroup else None
        wanted_cg = set(self.cfg.cgroup_ids)
        now = time.monotonic_ns()
        fd_map = self._conns_map.map_fd  # type: ignore[attr-defined]
        for ex in established:
            s = ex.sock
            if not self._port_wanted(s.local_port, s.remote_port):
                continue
            if by_cgroup and procfs.cgroup2_id(ex.pid, cg_mount) not in wanted_cg:
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

    # ---- periodic checks ----

    def _kernel_gaps(self, conn: Connection, ts: int) -> None:
        """A connection ends without a CLOSE record (its process exited, or the capture
        stops): bytes the kernel counted on it that never arrived (records lost to a full
        ring buffer) are gaps, as a CLOSE record's offsets would have shown."""
        cur = self._kernel_entry(conn.tgid, conn.fd, conn.conn_id)
        if cur is None or cur.flags & L.NT_CONN_MUTED:
            return
        if self._dec is not None:  # the core's CLOSE record carries them (capture_core.py)
            self._core_kernel_offsets(conn, cur)
            return
        for d in (0, 1):
            for ch in conn.streams[d].close_at(int(cur.off[d]), ts):
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
