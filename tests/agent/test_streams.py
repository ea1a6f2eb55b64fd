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


def test_close_delivers_the_records_queued_behind_a_hole() -> None:
    # issue 18: a 2 MiB write copied in part, the next response queued behind the hole,
    # then the close record in the same drain: the response must come out, not vanish
    s = OrderedStream()
    s.push(0, b"head", 1)
    assert s.push(10, b"next", 2) == []
    assert data(s.close_at(20, 3)) == [6, b"next", 6]
    assert s.next_offset == 20 and not s.waiting
    assert s.gaps == 2 and s.gap_bytes == 12


def test_close_keeps_the_tail_of_an_overlapping_record() -> None:
    s = OrderedStream()
    s.push(4, b"456789", 2)
    s.push(6, b"6789ab", 3)
    assert data(s.close_at(12, 4)) == [4, b"456789", b"ab"]
    assert s.next_offset == 12 and s.duplicate_bytes == 4


def test_a_gap_record_waits_in_its_place() -> None:
    s = OrderedStream()
    s.push(0, b"ab", 1)
    assert s.push_gap(5, 3, 2) == [] and s.waiting and s.pending_bytes == 0
    assert s.push(8, b"xy", 3) == []
    assert data(s.push(2, b"cde", 4)) == [b"cde", 3, b"xy"]
    assert s.gaps == 1 and s.gap_bytes == 3 and not s.waiting


def test_a_gap_record_in_order_is_a_gap_at_once() -> None:
    s = OrderedStream()
    s.push(0, b"ab", 1)
    assert data(s.push_gap(2, 5, 2)) == [5]
    assert data(s.push(7, b"z", 3)) == [b"z"]


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
