"""A TPACKET_V3 receive ring (PACKET_RX_RING) on an AF_PACKET socket.

The kernel writes frames into mmap'ed blocks and retires a block when it is full or after
``retire_ms``; Python waits with poll and hands each retired block whole to the core
(``PacketPipeline.block``), which walks its tpacket3_hdr entries and their timestamps. No
Python work per packet. Drops (the ring full) are the kernel's PACKET_STATISTICS.
"""

from __future__ import annotations

import mmap
import select
import socket
import struct
from collections.abc import Iterator

SOL_PACKET = 263
PACKET_RX_RING = 5
PACKET_STATISTICS = 6
PACKET_VERSION = 10
TPACKET_V3 = 2
TP_STATUS_KERNEL = 0
TP_STATUS_USER = 1
# struct tpacket_block_desc: version, offset_to_priv, then tpacket_hdr_v1.block_status
_BLOCK_STATUS = 8
_BLOCK_LEN = 20  # blk_len: the bytes of the block in use
_BLOCK_HDR = 48
_U32 = struct.Struct("I")
_REQ3 = struct.Struct("IIIIIII")  # struct tpacket_req3
FRAME_SIZE = 2048  # the ring's nominal frame (V3 packs frames of any size into blocks)
MAX_BLOCK = 1 << 20
MIN_BLOCK = 1 << 17


def ring_geometry(size: int) -> tuple[int, int]:
    """(block size, block count) for a ring of about `size` bytes: at least 4 blocks of a
    power-of-two number of pages, from MIN_BLOCK (a GSO/GRO frame of 64 KiB fits whole)
    to MAX_BLOCK."""
    block = max(MIN_BLOCK, mmap.PAGESIZE)
    while block * 2 <= min(MAX_BLOCK, size // 4):
        block *= 2
    return block, max(4, size // block)


class RxRing:
    """The mmap'ed ring of one socket; ``blocks`` yields retired blocks in order."""

    def __init__(self, sock: socket.socket, size: int, retire_ms: int = 20) -> None:
        self.sock = sock
        self.block_size, self.block_nr = ring_geometry(size)
        sock.setsockopt(SOL_PACKET, PACKET_VERSION, TPACKET_V3)
        frames = self.block_size // FRAME_SIZE * self.block_nr
        req = _REQ3.pack(self.block_size, self.block_nr, FRAME_SIZE, frames, retire_ms, 0, 0)
        sock.setsockopt(SOL_PACKET, PACKET_RX_RING, req)
        self.map = mmap.mmap(
            sock.fileno(), self.block_size * self.block_nr, mmap.MAP_SHARED,
            mmap.PROT_READ | mmap.PROT_WRITE,
        )  # fmt: skip
        self._view = memoryview(self.map)
        self._next = 0
        self._poll = select.poll()
        self._poll.register(sock.fileno(), select.POLLIN | select.POLLERR)

    def _status(self, i: int) -> int:
        return int(_U32.unpack_from(self.map, i * self.block_size + _BLOCK_STATUS)[0])

    def blocks(self, timeout_ms: int, limit: int) -> Iterator[memoryview]:
        """Retired blocks (at most `limit`), waiting up to `timeout_ms` for the first. Each
        block goes back to the kernel when the consumer asks for the next one (or stops)."""
        if not self._status(self._next) & TP_STATUS_USER:
            self._poll.poll(timeout_ms)
        for _ in range(limit):
            i = self._next
            if not self._status(i) & TP_STATUS_USER:
                return
            start = i * self.block_size
            used = int(_U32.unpack_from(self.map, start + _BLOCK_LEN)[0])
            used = min(max(used, _BLOCK_HDR), self.block_size)
            view = self._view[start : start + used]
            try:
                yield view
            finally:
                view.release()
                _U32.pack_into(self.map, start + _BLOCK_STATUS, TP_STATUS_KERNEL)
                self._next = (i + 1) % self.block_nr

    def kernel_stats(self) -> tuple[int, int]:
        """(packets, drops) since the last call (struct tpacket_stats_v3; reset on read)."""
        raw = self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 12)
        packets, drops, _freeze = struct.unpack("III", raw)
        return packets, drops

    def close(self) -> None:
        self._view.release()
        self.map.close()
