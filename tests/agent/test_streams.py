"""Ordering of one direction's records by stream offset, with explicit gaps."""

from __future__ import annotations

from agent.streams import Chunk, OrderedStream


def data(chunks: list[Chunk]) -> list[bytes | int]:
    return [c.data if c.data is not None else c.size for c in chunks]


def test_in_order_records_pass_straight_through() -> None:
    s = OrderedStream()
    assert data(s.push(0, b"abc", 1)) == [b"abc"]
    assert data(s.push(3, b"de", 2)) == [b"de"]
    assert s.next_offset == 5 and s.pending_bytes == 0


def test_an_early_record_waits_for_the_hole() -> None:
    s = OrderedStream()
    assert s.push(3, b"def", 2) == []
    assert s.pending_bytes == 3
    assert data(s.push(0, b"abc", 1)) == [b"abc", b"def"]
    assert s.pending_bytes == 0


def test_a_hole_that_survives_a_drain_becomes_a_gap() -> None:
    s = OrderedStream()
    s.push(0, b"ab", 1)
    s.push(10, b"xyz", 3)
    assert s.end_of_batch() == []  # the missing record may still be in the ring
    chunks = s.end_of_batch()
    assert data(chunks) == [8, b"xyz"]
    assert s.gaps == 1 and s.gap_bytes == 8
    assert s.next_offset == 13


def test_gap_to_skips_and_keeps_the_tail_of_an_overlapping_record() -> None:
    s = OrderedStream()
    s.push(4, b"456789", 2)
    assert data(s.gap_to(6, 3)) == [6, b"6789"]
    assert s.next_offset == 10


def test_duplicates_are_dropped_and_counted() -> None:
    s = OrderedStream()
    s.push(0, b"abcd", 1)
    assert s.push(0, b"abcd", 1) == []
    assert data(s.push(2, b"cdef", 2)) == [b"ef"]
    assert s.duplicate_bytes == 6


def test_pending_is_bounded() -> None:
    s = OrderedStream(max_pending_bytes=10)
    s.push(0, b"a", 1)
    out = s.push(100, b"x" * 11, 2)
    assert data(out) == [99, b"x" * 11]


def test_unknown_gap() -> None:
    s = OrderedStream()
    assert data(s.unknown_gap(5)) == [0]
    assert s.gaps == 1
