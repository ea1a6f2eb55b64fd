"""Bulk reader of a BPF ring buffer through its mmap, without a Python call per record.

The kernel's layout (kernel/bpf/ringbuf.c, the stable mmap ABI that libbpf uses too):
page 0 holds the consumer position (written by us), page 1 the producer position
(read-only), then the data area, mapped twice in a row so that a record that wraps
around the end is still contiguous. Each record has an 8-byte header: a u32 length
with BUSY (bit 31: reserved, not yet committed) and DISCARD (bit 30) flags, and a u32
page offset; records are 8-byte aligned.

Positions are loaded and stored as aligned 8-byte words (a byte-wise store could let the
kernel read a torn consumer position and drop records as "buffer full").

A reader copies committed extents out of the ring byte for byte (read_extent, or peek_extent
and release) and hands them to the Rust core whole; iter_records walks the same bytes in
Python (the Python record loop, the tests).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
import struct
from collections.abc import Callable, Iterator

from agent.bpf_layout import NT_COMMITTED_STRIDE
from agent.bpf_syscall import possible_cpus

BUSY = 1 << 31
DISCARD = 1 << 30
HDR = 8
_LEN_MASK = ~(BUSY | DISCARD) & 0xFFFFFFFF
_u32 = struct.Struct("<I").unpack_from


def iter_records(blob: memoryview) -> Iterator[memoryview]:
    """Yield the payload of each record of ring-buffer-format bytes, skipping discarded ones.

    Stops, without an error, at a truncated trailing record (fewer bytes left than its
    aligned size) and at a record still marked BUSY (not committed yet). The views share
    blob's memory.
    """
    off = 0
    total = len(blob)
    while off + HDR <= total:
        word = _u32(blob, off)[0]
        if word & BUSY:
            return
        length = word & _LEN_MASK
        nxt = off + ((HDR + length + 7) & ~7)
        if nxt > total:
            return
        if not word & DISCARD:
            yield blob[off + HDR : off + HDR + length]
        off = nxt


def whole_prefix(blob: bytes | bytearray | memoryview) -> int:
    """Length of the longest prefix of blob made of whole, committed records (what
    iter_records walks), for a reader that may see a partially written tail."""
    off = 0
    total = len(blob)
    while off + HDR <= total:
        word = _u32(blob, off)[0]
        if word & BUSY:
            break
        nxt = off + ((HDR + (word & _LEN_MASK) + 7) & ~7)
        if nxt > total:
            break
        off = nxt
    return off


_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_MAP_FAILED = ctypes.c_void_p(-1).value


def _mmap(length: int, prot: int, fd: int, offset: int) -> int:
    addr = _libc.mmap(None, length, prot, mmap.MAP_SHARED, fd, offset)
    if addr in (None, _MAP_FAILED):
        err = ctypes.get_errno()
        raise OSError(err, f"mmap of the BPF ring buffer failed: {os.strerror(err)}")
    return int(addr)


class CommittedCount:
    """The programs' count of committed ring-buffer bytes (bpf/common.h: ring_committed),
    read from the array map mapped into this process: one word per CPU, summed."""

    def __init__(self, map_fd: int) -> None:
        size = possible_cpus() * NT_COMMITTED_STRIDE * 8
        self._map = mmap.mmap(map_fd, size, mmap.MAP_SHARED, mmap.PROT_READ)
        self._words: memoryview | None = memoryview(self._map).cast("Q")

    def __call__(self) -> int:
        assert self._words is not None, "read after close()"
        return sum(self._words[::NT_COMMITTED_STRIDE])

    def close(self) -> None:
        if self._words is not None:
            self._words.release()
            self._words = None
            self._map.close()


class RingBufferReader:
    """Reads committed records of a BPF_MAP_TYPE_RINGBUF map in bulk."""

    def __init__(
        self, map_fd: int, data_size: int, committed: Callable[[], int] | None = None
    ) -> None:
        """committed: the bytes of records committed so far (bpf/common.h:
        ring_committed), when the programs count them; the reader then copies an extent
        without walking its headers whenever every reserved record is committed."""
        self._committed = committed
        self.unwalked = 0  # extents copied without a walk (committed() said they could be)
        if data_size <= 0 or data_size & (data_size - 1):
            raise ValueError(f"ring buffer size must be a power of two, not {data_size}")
        self._page = mmap.PAGESIZE
        self._size = data_size
        self._mask = data_size - 1
        self._cons_addr = _mmap(self._page, mmap.PROT_READ | mmap.PROT_WRITE, map_fd, 0)
        self._prod_len = self._page + 2 * data_size
        self._prod_addr = _mmap(self._prod_len, mmap.PROT_READ, map_fd, self._page)
        self._data_addr = self._prod_addr + self._page
        self._cons = ctypes.c_uint64.from_address(self._cons_addr)
        self._prod = ctypes.c_uint64.from_address(self._prod_addr)
        # the first copy of the data area as 32-bit words, for reading record headers in
        # place without a ctypes object per record (a header is 8-byte aligned)
        self._words: memoryview | None = (
            memoryview((ctypes.c_char * data_size).from_address(self._data_addr))
            .cast("B")
            .cast("I")
        )

    @property
    def size(self) -> int:
        return self._size

    def pending(self) -> int:
        """Bytes written by the kernel and not yet consumed (committed or not)."""
        return int(self._prod.value - self._cons.value)

    def peek_extent(self, max_bytes: int = 64 << 20) -> tuple[bytes, int] | None:
        """Copy the committed extent (headers included, as in the ring) without consuming it.

        Returns the bytes and the position to pass to release() once they are safe
        elsewhere, or None when nothing is committed. The extent is at most max_bytes long,
        unless its first record alone is longer (it is then the whole extent).
        """
        cons = int(self._cons.value)
        if cons == int(self._prod.value):
            return None
        base = self._data_addr
        mask = self._mask
        words = self._words
        assert words is not None, "read after close()"
        # 1. Find the committed extent. When the bytes committed, read before the producer
        #    position, equal it, every record up to it is committed: committed bytes never
        #    exceed reserved ones, and the producer position only grows.
        #    A record being written as the two are read spoils a try: try again, twice.
        #    (The count is loaded before the position, and both before the bytes: x86-64
        #    keeps loads in order; on arm64, where nodetap has not run, an acquire would be
        #    needed here and in the walk.)
        tries = 3 if self._committed is not None else 0
        for _ in range(tries):
            committed = self._committed() if self._committed is not None else -1
            prod = int(self._prod.value)
            if committed == prod:
                if prod - cons > max_bytes:
                    break
                self.unwalked += 1
                return ctypes.string_at(base + (cons & mask), prod - cons), prod
        prod = int(self._prod.value)
        #    Otherwise walk the headers in place: a record whose header no longer has BUSY
        #    set has all of its bytes written.
        end = cons
        limit = cons + max_bytes
        while end < prod:
            word = words[(end & mask) >> 2]
            if word & BUSY:
                break
            nxt = end + ((HDR + (word & _LEN_MASK) + 7) & ~7)
            if nxt > limit and end > cons:
                break
            end = nxt
        if end == cons:
            return None
        # 2. Copy the extent out in one go (contiguous thanks to the double mapping).
        return ctypes.string_at(base + (cons & mask), end - cons), end

    def release(self, end: int) -> None:
        """Hand the ring's space up to end (from peek_extent) back to the kernel."""
        cons = int(self._cons.value)
        if not cons <= end <= int(self._prod.value) or end & 7:
            raise ValueError(f"release({end}) outside the unconsumed extent starting at {cons}")
        # aligned 8-byte store
        self._cons.value = end

    def read_extent(self, max_bytes: int = 64 << 20) -> bytes | None:
        """Copy the committed extent (headers included) and release it to the kernel;
        None when nothing is committed."""
        got = self.peek_extent(max_bytes)
        if got is None:
            return None
        blob, end = got
        self.release(end)
        return blob

    def read(self, max_bytes: int = 64 << 20) -> Iterator[memoryview]:
        """Yield the payload of each committed record, then release them to the kernel.

        The records' bytes are copied out first, so the views stay valid after the
        consumer position moves on.
        """
        blob = self.read_extent(max_bytes)
        if blob is not None:
            yield from iter_records(memoryview(blob))

    def close(self) -> None:
        if self._words is not None:
            self._words.release()
            self._words = None
        if self._cons_addr:
            _libc.munmap(self._cons_addr, self._page)
            _libc.munmap(self._prod_addr, self._prod_len)
            self._cons_addr = 0
