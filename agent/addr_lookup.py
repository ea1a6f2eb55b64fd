"""The addresses of a connection's fd read from /proc, trusted only when the fd provably
still named that connection while they were read.

/proc/PID/fd/N says which socket N names *now*. A connection's records are decoded after
the fact (a drain later), and by then the process
may have closed N and accepted the next connection on the same number: its addresses
would be taken for the earlier connection's (issue 18: each RRPair of five sequential
requests to Node.js carried the next connection's client). The programs' `conns` entry
for (tgid, N) is the witness: close() removes it at syscall entry, before the number is
free, and the next accept() or connect() on N puts another connection id there. So if the
entry holds the connection's id, and is not marked closed, both before and after the
socket inode and its addresses are read, N named that connection throughout, and the
addresses are its own. Otherwise nothing is returned: an address absent is better than a
wrong one (the caller waits for the kernel's NT_EV_ADDR record, or flags the RRPairs).

What this cannot see: a dup2()/dup3() onto N between its implicit close and its exit
(the programs end the connection at the exit), and close_range(), which the programs do
not follow: then N may name a socket made by socket() alone, so listening and unconnected
sockets are refused too.
"""

from __future__ import annotations

from collections.abc import Callable

from agent import procfs


def verified_fd_sock(tgid: int, fd: int, still_same: Callable[[], bool]) -> procfs.SockInfo | None:
    """The TCP socket behind /proc/TGID/fd/FD if `still_same()` (the conns entry still
    names the connection) held before and after it was read; else None."""
    if not still_same():
        return None
    inode = procfs.socket_inode(tgid, fd)
    if inode is None:
        return None
    sock = procfs.read_tcp_table(tgid).get(inode)
    if sock is None or sock.state == procfs.TCP_LISTEN or not sock.remote_port:
        return None
    if procfs.socket_inode(tgid, fd) != inode or not still_same():
        return None
    return sock
