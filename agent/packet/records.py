"""A reassembled flow as the records the kernel programs write (bpf/nodetap.h,
agent/bpf_layout.py), so that packets reach the same core decoder as the syscall capture.

The flow is seen from its client's side: role CLIENT, local = client, remote = server;
EGRESS (direction 0) carries the requests. A flow picked up without its handshake is
marked with the OPEN's preexisting family bit (its streams may begin mid-message).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct

from agent import bpf_layout as L
from agent.packet.flows import FlowInfo

# the OPEN record's family bit for a connection whose start was not seen (core/src/layout.rs)
FAMILY_PREEXISTING = 0x8000
_AF_INET6 = 10
# the ring-buffer header (length, flags) and the data record's header, packed at once
_DATA = struct.Struct("<II" + L.DATA_HDR.format[1:])
_PAD = tuple(bytes(i) for i in range(8))
_COMM = b"packet".ljust(16, b"\0")


def default_prefix() -> str:
    """The RRPair id prefix of this process (as agent.rrpairs.RRPairIds)."""
    return f"{socket.gethostname()}-{os.getpid():x}"


def _addr16(ip: str) -> bytes:
    a = ipaddress.ip_address(ip or "0.0.0.0")
    return (bytes(10) + b"\xff\xff" + a.packed) if a.version == 4 else a.packed


def _conn(kind: int, cid: int, ts_ns: int, info: FlowInfo | None, off: tuple[int, int]) -> bytes:
    family = _AF_INET6 | (FAMILY_PREEXISTING if info is not None and info.midstream else 0)
    if info is not None:
        lport, rport = info.client_port, info.server_port
        laddr, raddr = _addr16(info.client_ip), _addr16(info.server_ip)
    else:
        lport = rport = 0
        laddr = raddr = bytes(16)
    payload = L.CONN_EVENT.pack(
        kind, L.NT_ROLE_CLIENT, family, 0, cid, ts_ns, 0, lport, rport, laddr, raddr,
        off[0], off[1], 0, _COMM,
    )  # fmt: skip
    return struct.pack("<II", len(payload), 0) + payload + _PAD[-len(payload) % 8]


def open_record(info: FlowInfo, ts_ns: int = 0) -> bytes:
    """The OPEN record of a flow (its id is the flow id)."""
    return _conn(L.NT_EV_OPEN, info.flow_id, ts_ns, info, (0, 0))


def close(cid: int, ts_ns: int, off: list[int]) -> bytes:
    """The CLOSE record: each direction's length (EGRESS, INGRESS)."""
    return _conn(L.NT_EV_CLOSE, cid, ts_ns, None, (off[0], off[1]))


def data(cid: int, d: int, off: int, payload: bytes, ts_ns: int) -> bytes:
    """One DATA record of `payload` at stream offset `off` in direction `d`."""
    n = len(payload)
    hdr = _DATA.pack(L.NT_DATA_HDR_SIZE + n, 0, L.NT_EV_DATA, d, 0, n, cid, ts_ns, off, 0, 0)
    return hdr + payload + _PAD[-n % 8]


def gap(cid: int, d: int, off: int, size: int, ts_ns: int) -> bytes:
    """A GAP record: `size` bytes at `off` were not captured (0: an unknown number)."""
    return _DATA.pack(L.NT_DATA_HDR_SIZE, 0, L.NT_EV_GAP, d, 0, size, cid, ts_ns, off, 0, 0)
