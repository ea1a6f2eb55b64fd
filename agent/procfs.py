"""What /proc says about sockets: addresses of an fd, and connections that already exist.

Used for connections the programs could not learn about at accept/connect time: those
opened before the capture started, and accept() calls made without a sockaddr. Reads
/proc/PID/net/tcp{,6}, which shows the network namespace of PID (pods have their own).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from nodetap.errors import ConfigError

TCP_ESTABLISHED = 0x01
TCP_LISTEN = 0x0A


@dataclass(frozen=True, slots=True)
class SockInfo:
    inode: int
    local_ip: str
    local_port: int
    remote_ip: str
    remote_port: int
    state: int
    family: int  # 2 or 10


def _decode_addr(hexaddr: str) -> tuple[str, int]:
    """/proc/net/tcp address ("0100007F:1F90") to ("127.0.0.1", 8080)."""
    host, port = hexaddr.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        ip = str(ipaddress.IPv4Address(raw[::-1]))
    else:
        # four 32-bit words, each in host (little-endian) order
        words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
        ip = normalize_ip(words)
    return ip, int(port, 16)


def normalize_ip(raw: bytes) -> str:
    """16 (or 4) raw address bytes to text; IPv4-mapped IPv6 becomes plain IPv4."""
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw))
    addr = ipaddress.IPv6Address(raw)
    if addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(addr)


def read_tcp_table(pid: int | str = "self") -> dict[int, SockInfo]:
    """TCP sockets of the network namespace of `pid`, by socket inode."""
    out: dict[int, SockInfo] = {}
    for name, family in (("tcp", 2), ("tcp6", 10)):
        try:
            with open(f"/proc/{pid}/net/{name}") as f:
                next(f, None)
                for line in f:
                    parts = line.split()
                    if len(parts) < 10:
                        continue
                    lip, lport = _decode_addr(parts[1])
                    rip, rport = _decode_addr(parts[2])
                    inode = int(parts[9])
                    if inode:
                        out[inode] = SockInfo(
                            inode, lip, lport, rip, rport, int(parts[3], 16), family
                        )
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return out


def socket_inode(pid: int, fd: int) -> int | None:
    """The socket inode behind /proc/PID/fd/FD, or None if it is not a socket."""
    try:
        target = os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return None
    if target.startswith("socket:["):
        return int(target[8:-1])
    return None


def netns_id(pid: int) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


def process_alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


def comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""


def lookup_fd(pid: int, fd: int) -> SockInfo | None:
    """Addresses of the TCP socket fd names *now*, or None (not TCP, or gone). The process
    may have reused the number since a record about it was written: to learn a tracked
    connection's addresses use agent/addr_lookup.py, which proves the fd still named it."""
    inode = socket_inode(pid, fd)
    if inode is None:
        return None
    return read_tcp_table(pid).get(inode)


def listening_ports(table: dict[int, SockInfo]) -> set[int]:
    return {s.local_port for s in table.values() if s.state == TCP_LISTEN}


@dataclass(frozen=True, slots=True)
class ExistingConn:
    pid: int
    fd: int
    sock: SockInfo
    server: bool  # the process accepted it (its local port is a listening port)


def _pids() -> Iterator[int]:
    for name in os.listdir("/proc"):
        if name.isdigit():
            yield int(name)


@dataclass(slots=True)
class SocketScan:
    """What a walk of the processes' fds found."""

    established: list[ExistingConn] = field(default_factory=list)
    listening_pids: set[int] = field(default_factory=set)  # processes with a TCP listener


def scan_sockets(pids: Iterable[int] | None = None, skip: int | None = None) -> SocketScan:
    """Established TCP connections of the given processes (all when None), and which of
    them listen."""
    scan = SocketScan()
    tables: dict[int, tuple[dict[int, SockInfo], set[int]]] = {}
    for pid in pids if pids is not None else _pids():
        if pid == skip:
            continue
        ns = netns_id(pid)
        if ns is None:
            continue
        if ns not in tables:
            t = read_tcp_table(pid)
            tables[ns] = (t, listening_ports(t))
        table, listening = tables[ns]
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd_name in fds:
            inode = socket_inode(pid, int(fd_name))
            if inode is None:
                continue
            sock = table.get(inode)
            if sock is None:
                continue
            if sock.state == TCP_LISTEN:
                scan.listening_pids.add(pid)
            elif sock.state == TCP_ESTABLISHED:
                server = sock.local_port in listening
                scan.established.append(ExistingConn(pid, int(fd_name), sock, server))
    return scan


def cgroup2_mount() -> str | None:
    """Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or .../unified on hybrid)."""
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) > 2 and parts[2] == "cgroup2":
                    return parts[1]
    except OSError:
        pass
    return None


def cgroup2_id(pid: int, mount: str | None = None) -> int | None:
    """The cgroup v2 id of a process (the inode of its cgroup directory), as
    bpf_get_current_cgroup_id() reports it."""
    mount = mount or cgroup2_mount()
    if mount is None:
        return None
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    return os.stat(mount + line[3:].strip()).st_ino
    except OSError:
        return None
    return None


def cgroup2_ids(paths: Iterable[str]) -> list[int]:
    """The cgroup v2 ids of cgroup directories, given absolute or relative to the cgroup v2
    mount (a capture's cgroup filter)."""
    mount = cgroup2_mount()
    ids = []
    for p in paths:
        full = p if os.path.isabs(p) else os.path.join(mount or "/sys/fs/cgroup", p)
        try:
            ids.append(os.stat(full).st_ino)
        except OSError:
            raise ConfigError(f"cgroup {p} not found (cgroup v2 is mounted at {mount})") from None
    return ids
