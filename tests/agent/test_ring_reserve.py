"""The room the ring buffer keeps for control records (agent/ring_reserve.py)."""

from __future__ import annotations

from agent.ring_reserve import MAX_RECORD, ring_reserve

MiB = 1 << 20


def test_an_eighth_of_a_large_ring() -> None:
    assert ring_reserve(16 * MiB, 2) == 2 * MiB


def test_at_least_two_largest_records_per_cpu_but_never_more_than_half() -> None:
    assert ring_reserve(1 * MiB, 8) == 16 * MAX_RECORD
    assert ring_reserve(256 << 10, 64) == 128 << 10
    assert ring_reserve(4096, 1) == 2048
