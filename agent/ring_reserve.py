"""How much of the ring buffer is kept for control records (bpf/common.h: NT_RING_DATA_LIMIT).

Data records stop at the limit so that a flood of data can never make the programs lose
an open, address or close record (a connection whose open is lost vanishes whole). The
reserve is an eighth of the ring, but at least twice the largest record per CPU: each CPU
can pass the programs' check of the fill level before any of them reserves, so the data
may overshoot the limit by up to one record per CPU. It never exceeds half the ring.
Small data records (requests and response heads, mostly) may fill the first half of the
reserve (NT_RING_SMALL_LIMIT), so that an exchange whose body is lost is still seen.
"""

from __future__ import annotations

from agent.bpf_layout import NT_DATA_HDR_SIZE, NT_MAX_CHUNK

# a data record as the ring stores it: 8-byte header, header of ours, payload, padding
MAX_RECORD = (8 + NT_DATA_HDR_SIZE + NT_MAX_CHUNK + 7) & ~7


def ring_reserve(ring_bytes: int, cpus: int) -> int:
    """Bytes at the end of a ring of ring_bytes that only control records may fill."""
    want = max(ring_bytes // 8, 2 * max(cpus, 1) * MAX_RECORD)
    return min(want, ring_bytes // 2)
