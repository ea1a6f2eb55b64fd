"""Ring-buffer-format bytes for the tests of the ring spool and of its drain process."""

from __future__ import annotations

import struct
from pathlib import Path

from agent.ring_spool import RingSpoolReader
from agent.ringbuf import DISCARD

REPO = Path(__file__).resolve().parents[2]


def record(payload: bytes, discard: bool = False) -> bytes:
    word = len(payload) | (DISCARD if discard else 0)
    return struct.pack("<II", word, 0) + payload + bytes(-len(payload) % 8)


def numbered(i: int, spread: int = 37) -> bytes:
    """A payload that says which record it is and how long it must be (4..spread+3 bytes)."""
    return struct.pack("<I", i) + bytes([i % 251]) * (i * 7 % spread)


def check_numbered(p: memoryview | bytes, spread: int = 37) -> int:
    i = int(struct.unpack_from("<I", p)[0])
    assert bytes(p) == numbered(i, spread), f"record {i} is not whole"
    return i


def read_all(reader: RingSpoolReader, max_bytes: int = 64 << 20) -> list[bytes]:
    return [bytes(p) for p in reader.read(max_bytes)]
