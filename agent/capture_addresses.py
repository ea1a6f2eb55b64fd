"""Addresses of connections the programs opened without them, right or absent, never wrong.

An accept() without a sockaddr (libuv: Node.js, uvloop) opens a connection whose
addresses the accept() exit cannot know (NT_CONN_NOADDR); a non-blocking connect() one
whose local port is not assigned yet. Their addresses arrive in an NT_EV_ADDR record:
from the first read (bpf/conn_addr.c, before the read's data records, where the kernel
has the tracepoint), from the TCP state change of the connection (a client's ESTABLISHED,
or the state change inside close()). Where the kernel will not report them at the first
read, /proc is asked, and believed only if the connection provably still owned its fd
while it was read (agent/addr_lookup.py).

Until then the connection's exchanges are held (at most MAX_HELD), and the --port filter
(CaptureConfig.ports) is decided once the addresses are known: a connection that matches
is never dropped. A connection whose addresses stay unknown (its records held too long,
its close() reported nothing) is emitted without them, flagged ``noaddr`` and counted
(``conns_noaddr_unresolved``, ``rrpairs_noaddr``), whatever the port filter: it may match.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from agent import addr_lookup, procfs
from agent import bpf_layout as L
from agent.capture_connections import CaptureConnections
from agent.connections import Connection

if TYPE_CHECKING:
    from agent.protocols.http1.types import HttpExchange

# exchanges held per connection while its addresses are unknown; then they go out flagged
MAX_HELD = 64


class CaptureAddresses(CaptureConnections):
    """The address side of the record loop (agent/capture.py)."""

    if TYPE_CHECKING:  # the record loop's side (agent/capture.py)
        _parked: dict[int, tuple[Connection, int]]

        def _emit(self, conn: Connection, ex: HttpExchange) -> None: ...

    def _open_addresses(
        self,
        f: tuple[Any, ...],
        local: tuple[str, int],
        remote: tuple[str, int],
    ) -> tuple[tuple[str, int], tuple[str, int], bool]:
        """The addresses an OPEN record without them (f) starts with, and whether they are
        still unknown (the connection then waits for NT_EV_ADDR)."""
        _, role, _family, tgid, cid, *_ = f
        self.stats["conns_noaddr"] += 1
        at_read = self.probes is not None and self.probes.addr_at_read
        if role == L.NT_ROLE_SERVER and at_read:
            return local, remote, True  # the first read reports them, before its bytes

        def still_same() -> bool:
            cur = self._kernel_entry(tgid, f[6], cid)
            return cur is not None and not cur.flags & L.NT_CONN_CLOSED

        sock = addr_lookup.verified_fd_sock(tgid, f[6], still_same)
        if sock is None:
            return local, remote, True
        self.stats["conns_noaddr_resolved"] += 1
        return (sock.local_ip, sock.local_port), (sock.remote_ip, sock.remote_port), False

    def _hold(self, conn: Connection, ex: HttpExchange) -> None:
        """Keep an exchange of a connection whose addresses are not known yet."""
        conn.held.append(ex)
        if len(conn.held) > MAX_HELD:
            self._release(conn)  # unknown: out they go, flagged

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
        elif "noaddr" in conn.flags and conn.remote_port:
            # its first exchanges went out without addresses; the rest have them
            conn.flags.discard("noaddr")
            self.stats["conns_noaddr_resolved"] += 1
            if not self._port_wanted(conn.local_port, conn.remote_port) and not conn.dead:
                self.stats["conns_filtered_user"] += 1
                self._untrack(conn)

    def _release(self, conn: Connection) -> None:
        """Emit what a connection without addresses held back: its addresses are known now
        (the port filter decides), or will not be (flagged ``noaddr``, never dropped)."""
        conn.noaddr = False
        held, conn.held = conn.held, []
        if not (conn.local_port and conn.remote_port):
            conn.flags.add("noaddr")
            conn.ctx = None
            self.stats["conns_noaddr_unresolved"] += 1
        elif not self._port_wanted(conn.local_port, conn.remote_port):
            self.stats["conns_filtered_user"] += 1
            if not conn.dead:
                self._untrack(conn)
            return
        self._released(conn, held)

    def _released(self, conn: Connection, held: list[HttpExchange]) -> None:
        """The held exchanges of conn go out (its context is final now)."""
        for ex in held:
            self._emit(conn, ex)

    def _age_parked(self, force: bool = False) -> None:
        """Closed connections wait one drain for the NT_EV_ADDR record their close()
        writes after the CLOSE record."""
        for cid, (conn, age) in list(self._parked.items()):
            if force or age >= 1:
                del self._parked[cid]
                self._release(conn)
            else:
                self._parked[cid] = (conn, age + 1)
