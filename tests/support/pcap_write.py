"""Recorded connections (tests/support/relay.py) written as a classic pcap file: Ethernet,
IPv4, TCP with a handshake, in-order segments of at most 16 KiB and FINs, in the order the
bytes were recorded. Deterministic (no capture drops): tshark and the packet path read the
very bytes the peers exchanged."""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

from tests.support.relay import Recorded

_SEG = 16384
_CLIENT_IP = bytes([127, 0, 0, 1])
_SERVER_IP = bytes([127, 0, 0, 2])


def _frame(
    src: tuple[bytes, int], dst: tuple[bytes, int], seq: int, ack: int, flags: int, data: bytes
) -> bytes:
    tcp = struct.pack(
        "!HHIIBBHHH", src[1], dst[1], seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, 65535, 0, 0
    )
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp) + len(data), 0, 0x4000, 64, 6, 0, src[0], dst[0]
    )
    eth = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00"
    return eth + ip + tcp + data


def write_pcap(conns: Sequence[Recorded], path: Path, server_port: int) -> None:
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1)]
    t = 1_700_000_000_000_000

    def rec(frame: bytes) -> None:
        nonlocal t
        t += 10
        out.append(
            struct.pack("<IIII", t // 1_000_000, t % 1_000_000, len(frame), len(frame)) + frame
        )

    for i, conn in enumerate(conns):
        c, s = (_CLIENT_IP, 40000 + i), (_SERVER_IP, server_port)
        seq = {"req": 1000, "res": 5000}
        rec(_frame(c, s, seq["req"] - 1, 0, 0x02, b""))  # SYN
        rec(_frame(s, c, seq["res"] - 1, seq["req"], 0x12, b""))  # SYN-ACK
        rec(_frame(c, s, seq["req"], seq["res"], 0x10, b""))
        for side, data, _ in conn.pieces:
            src, dst, other = (c, s, "res") if side == "req" else (s, c, "req")
            for k in range(0, len(data), _SEG):
                seg = data[k : k + _SEG]
                rec(_frame(src, dst, seq[side], seq[other], 0x18, seg))
                seq[side] += len(seg)
        rec(_frame(c, s, seq["req"], seq["res"], 0x11, b""))  # FIN
        rec(_frame(s, c, seq["res"], seq["req"] + 1, 0x11, b""))
        rec(_frame(c, s, seq["req"] + 1, seq["res"] + 1, 0x10, b""))
    path.write_bytes(b"".join(out))
