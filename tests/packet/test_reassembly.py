"""TcpStream on its own: segments in, ordered chunks and gaps out (no I/O)."""

from __future__ import annotations

import itertools
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.packet.reassembly import Chunk, Gap, StreamEvent, TcpStream


def _bytes(events: list[StreamEvent]) -> bytes:
    out = bytearray()
    for ev in events:
        if isinstance(ev, Chunk):
            out += ev.data
        else:
            out += b"\0" * ev.size
    return bytes(out)


def _segments(data: bytes, isn: int, size: int) -> list[tuple[int, bytes]]:
    return [((isn + i) & 0xFFFFFFFF, data[i : i + size]) for i in range(0, len(data), size)]


def test_in_order_delivery() -> None:
    s = TcpStream()
    s.start(1000)
    ev = s.segment(1000, b"hello ", 1) + s.segment(1006, b"world", 2)
    assert ev == [Chunk(0, b"hello ", 1), Chunk(6, b"world", 2)]
    assert s.next_offset == 11


def test_sequence_wrap() -> None:
    data = bytes(range(256)) * 40
    s = TcpStream()
    isn = 0xFFFFFFFF - 3000
    s.start(isn)
    out: list[StreamEvent] = []
    for seq, chunk in _segments(data, isn, 500):
        out += s.segment(seq, chunk, 0)
    assert _bytes(out) == data
    assert s.stats.gaps == 0


def test_out_of_order_duplicates_and_overlaps_random() -> None:
    rng = random.Random(7)
    data = rng.randbytes(50_000)
    isn = 0xFFFF0000
    segs = _segments(data, isn, 700)
    # overlapping re-segmentation of the same bytes, duplicates, shuffled
    segs += [((isn + o) & 0xFFFFFFFF, data[o : o + 1000]) for o in range(350, len(data), 3000)]
    segs += rng.sample(segs, 20)
    rng.shuffle(segs)
    s = TcpStream()
    s.start(isn)
    out: list[StreamEvent] = []
    for seq, chunk in segs:
        out += s.segment(seq, chunk, 0)
    out += s.flush(0)
    assert _bytes(out) == data
    assert s.stats.gaps == 0
    assert s.stats.out_of_order > 0
    assert s.stats.duplicate_bytes > 0
    assert s.stats.conflicts == 0


def test_first_copy_wins_and_conflicts_counted() -> None:
    s = TcpStream()
    s.start(0)
    out = s.segment(10, b"BBBBB", 0)  # waits
    out += s.segment(10, b"XXXXX", 0)  # conflicting copy of waiting bytes
    out += s.segment(0, b"AAAAAAAAAA", 0)
    out += s.segment(5, b"ZZZZZ", 0)  # conflicting retransmission of delivered bytes
    assert _bytes(out) == b"A" * 10 + b"B" * 5
    assert s.stats.conflicts == 2


def test_ack_past_missing_bytes_reports_gap() -> None:
    s = TcpStream()
    s.start(100)
    out = s.segment(100, b"a" * 10, 0)
    out += s.segment(120, b"c" * 10, 0)  # bytes 110..120 never captured
    assert _bytes(out) == b"a" * 10
    out += s.acked(130, 5)
    assert out[1:] == [Gap(10, 10, 5), Chunk(20, b"c" * 10, 0)]
    assert s.stats.gaps == 1 and s.stats.gap_bytes == 10


def test_ack_of_fin_is_not_a_gap() -> None:
    s = TcpStream()
    s.start(0)
    s.segment(0, b"abc", 0)
    s.fin(3, 0)
    assert s.acked(4, 0) == []


def test_flush_turns_holes_into_gaps() -> None:
    s = TcpStream()
    s.start(0)
    s.segment(0, b"x" * 4, 0)
    s.segment(8, b"y" * 4, 0)
    s.fin(12, 0)
    s.segment(20, b"z", 0)  # beyond the FIN: bogus but buffered; flushed with a gap
    ev = s.flush(9)
    assert [type(e) for e in ev] == [Gap, Chunk, Gap, Chunk]


def test_buffer_limit_skips_ahead() -> None:
    s = TcpStream(max_buffer=1000)
    s.start(0)
    out: list[StreamEvent] = []
    for off in range(100, 1300, 100):  # bytes 0..100 missing, 1200 waiting > limit
        out += s.segment(off, b"q" * 100, 0)
    assert isinstance(out[0], Gap) and out[0].size == 100
    assert s.pending_bytes == 0
    assert s.next_offset == 1300


def test_far_segment_is_bogus() -> None:
    s = TcpStream()
    s.start(0)
    assert s.segment(0x7FFFFFF0, b"x", 0) == []
    assert s.stats.bogus == 1


@settings(max_examples=200, deadline=None)
@given(
    data=st.binary(min_size=1, max_size=4000),
    isn=st.integers(0, 0xFFFFFFFF),
    seed=st.integers(0, 2**32),
    drop=st.booleans(),
)
def test_any_segmentation_order_and_duplication(
    data: bytes, isn: int, seed: int, drop: bool
) -> None:
    """Random segment sizes, overlapping re-sends, shuffling: the bytes come out exactly
    once and in order; with a segment never sent, the gaps cover exactly what is missing."""
    rng = random.Random(seed)
    cuts = sorted({0, len(data), *(rng.randrange(len(data) + 1) for _ in range(8))})
    segs = [(a, data[a:b]) for a, b in itertools.pairwise(cuts) if b > a]
    resends = [
        (a, data[a : a + rng.randrange(1, 300)]) for a, _ in rng.sample(segs, len(segs) // 2)
    ]
    missing: tuple[int, int] | None = None
    if drop and len(segs) > 2:
        lost = segs.pop(rng.randrange(1, len(segs) - 1))
        missing = (lost[0], lost[0] + len(lost[1]))
        resends = [(a, d) for a, d in resends if a + len(d) <= missing[0] or a >= missing[1]]
    wire = segs + resends
    rng.shuffle(wire)
    s = TcpStream()
    s.start(isn)
    out: list[StreamEvent] = []
    for off, chunk in wire:
        out += s.segment((isn + off) & 0xFFFFFFFF, chunk, off)
    out += s.flush(0)
    got = _bytes(out)
    assert len(got) == len(data)
    if missing is None:
        assert got == data and s.stats.gaps == 0
    else:
        lo, hi = missing
        gap_total = sum(ev.size for ev in out if isinstance(ev, Gap))
        assert gap_total == hi - lo
        assert got[:lo] == data[:lo] and got[hi:] == data[hi:]
    offsets = [ev.offset for ev in out]
    assert offsets == sorted(offsets)
    assert s.stats.conflicts == 0
