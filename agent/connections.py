"""Who talks to whom: the connections the programs track, from open to close.

A connection is identified by the id the kernel gave it (unique per agent run), never
by (pid, fd), which the process reuses. Each holds its two ordered streams and the
protocol stitcher that turns them into exchanges. Knows nothing of BPF maps; the
capture engine tells it what happened.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from agent.bpf_layout import NT_DIR_EGRESS, NT_DIR_INGRESS, NT_ROLE_CLIENT, NT_ROLE_SERVER
from agent.protocols.http1 import Http1Stitcher
from agent.protocols.http1.types import HttpExchange
from agent.rrpairs import ConnContext
from agent.streams import OrderedStream
from nodetap.identity import Identity


@dataclass(slots=True, eq=False)
class Connection:
    conn_id: int
    tgid: int
    fd: int
    role: int  # NT_ROLE_*
    local_ip: str
    local_port: int
    remote_ip: str
    remote_port: int
    comm: str
    cgroup_id: int
    opened_ns: int
    stitcher: Http1Stitcher
    last_ns: int = 0
    flags: set[str] = field(default_factory=set)
    streams: tuple[OrderedStream, OrderedStream] = field(
        default_factory=lambda: (OrderedStream(), OrderedStream())
    )
    ctx: ConnContext | None = None
    rrpairs: int = 0
    # the direction requests flow in: out of a client (egress), into a server (ingress);
    # set from the role by the tracker
    req_dir: int = 0
    dead: bool = False  # no longer parsed (not HTTP, upgraded, untracked)
    # addresses not known yet (accepted without a sockaddr, gone from /proc): exchanges
    # wait in `held` until an NT_EV_ADDR record (at close) gives them
    noaddr: bool = False
    held: list[HttpExchange] = field(default_factory=list)
    # per direction (NT_DIR_*): wall-clock ns of the latest loss of bytes that no message
    # begun after it has followed yet, else 0 (agent/gap_marks.py)
    open_gaps: list[int] = field(default_factory=lambda: [0, 0])
    source: str = "syscall"  # meta.source: "tls" once its plaintext is captured (agent/tls/)

    def set_local(self, ip: str, port: int) -> None:
        self.local_ip, self.local_port = ip, port
        self.ctx = None  # rebuilt with the new address

    def set_remote(self, ip: str, port: int) -> None:
        self.remote_ip, self.remote_port = ip, port
        self.ctx = None

    def context(self, node: str) -> ConnContext:
        if self.ctx is None:
            server = self.role == NT_ROLE_SERVER
            if server:
                cip, cport, sip, sport = (
                    self.remote_ip,
                    self.remote_port,
                    self.local_ip,
                    self.local_port,
                )
            else:
                cip, cport, sip, sport = (
                    self.local_ip,
                    self.local_port,
                    self.remote_ip,
                    self.remote_port,
                )
            self.ctx = ConnContext(
                direction="INBOUND" if server else "OUTBOUND",
                client_ip=cip,
                client_port=cport,
                server_ip=sip,
                server_port=sport,
                source=self.source,
                conn_id=self.conn_id,
                who=Identity(node=node, pid=self.tgid, comm=self.comm),
                flags=set(self.flags),
            )
        return self.ctx


class ConnectionTracker:
    """The live connections, by id."""

    def __init__(self, max_conns: int = 65536) -> None:
        self._conns: dict[int, Connection] = {}
        self.max_conns = max_conns
        self.opened = 0
        self.closed = 0
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._conns)

    def __iter__(self) -> Iterator[Connection]:
        return iter(list(self._conns.values()))

    def get(self, conn_id: int) -> Connection | None:
        return self._conns.get(conn_id)

    def add(self, conn: Connection) -> None:
        conn.req_dir = NT_DIR_EGRESS if conn.role == NT_ROLE_CLIENT else NT_DIR_INGRESS
        self._conns[conn.conn_id] = conn
        self.opened += 1

    def pop(self, conn_id: int) -> Connection | None:
        conn = self._conns.pop(conn_id, None)
        if conn is not None:
            self.closed += 1
        return conn

    def idle(self, now_ns: int, idle_ns: int) -> list[Connection]:
        """Connections with no activity for idle_ns."""
        return [c for c in self._conns.values() if now_ns - max(c.last_ns, c.opened_ns) > idle_ns]
