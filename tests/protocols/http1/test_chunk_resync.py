"""A gap inside a chunked body: the framing is found again at a chunk-size line whose
framing holds (agent/protocols/http1/chunk_resync.py), so the message ends where it
really ends (trailers included), bytes inside chunk data that look like framing are not
believed, and `body_size` is bounded: at least the true size, at most the true size plus
the framing in the stretch that was lost or skipped. The message that lost bytes is
flagged `gap` (never `incomplete`), the next one comes out whole, on every split of the
bytes and in both parsers (fast path on and off).
"""

from __future__ import annotations

import itertools
import os

import pytest

from agent.protocols.http1 import Http1Stitcher
from agent.protocols.http1.chunk_resync import FOUND, MORE, NONE, find_chunk_boundary, prove
from agent.protocols.http1.types import HttpExchange
from tests.protocols.http1.helpers import GET, OK

HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"


def chunked(parts: list[bytes], trailers: bytes = b"") -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n" + trailers + b"\r\n"


def run(
    body: bytes, hole: tuple[int, int], cuts: list[int], fast: bool, then: bytes = OK
) -> list[HttpExchange]:
    """Two GETs; the first answered chunked with ``body`` (its bytes ``hole`` lost), the
    second with ``then``; the response bytes after the hole fed in pieces cut at ``cuts``."""
    st = Http1Stitcher(fast=fast)
    out = st.feed_request_bytes(GET + GET, 1)
    a, b = hole
    out += st.feed_response_bytes(HEAD + body[:a], 2)
    out += st.response_gap(b - a, 3)
    rest = body[b:] + then
    edges = [0, *sorted(c for c in cuts if 0 < c < len(rest)), len(rest)]
    for i, (x, y) in enumerate(itertools.pairwise(edges)):
        out += st.feed_response_bytes(rest[x:y], 4 + i)
    return out + st.close(99)


PARTS = [os.urandom(300), b"x" * 17, os.urandom(4000), b"tail data", os.urandom(70)]
BODY = chunked(PARTS)
TRUE_SIZE = sum(len(p) for p in PARTS)


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("cuts", [[], [1], [5, 9, 300], list(range(1, 5000, 97))])
def test_framing_found_again_after_a_hole_that_loses_it(fast: bool, cuts: list[int]) -> None:
    hole = (100, 340)  # from inside the first chunk's data to inside the second's
    out = run(BODY, hole, cuts, fast)
    assert [e.response.status_code if e.response else None for e in out] == [200, 200]
    first, second = out
    assert first.flags == {"gap"} and second.flags == set()
    assert first.response is not None and second.response is not None
    assert first.response.body == PARTS[0][:95]  # after its size line; none after the hole
    framing = len(BODY) - TRUE_SIZE
    assert TRUE_SIZE <= first.response.body_size <= TRUE_SIZE + framing
    assert second.response.body == b"hello"


@pytest.mark.parametrize("fast", [True, False])
def test_trailers_after_a_hole_end_the_message_without_a_next_one(fast: bool) -> None:
    """Before: only a last chunk without trailers was found; this message waited for the
    next start line, and at close came out flagged `incomplete`."""
    body = chunked([b"a" * 50, b"b" * 50], b"X-Checksum: 1\r\n")
    out = run(body, (10, 60), [], fast, then=b"")
    assert len(out) == 2  # the second GET: never answered
    first = out[0]
    assert first.response is not None and first.flags == {"gap"}
    assert first.response.trailers == [("X-Checksum", "1")]
    assert 100 <= first.response.body_size <= 100 + len(b"\r\n32\r\n") + len(b"32\r\n")
    assert out[1].response is None and out[1].flags == {"incomplete"}


@pytest.mark.parametrize("fast", [True, False])
def test_framing_lookalikes_inside_chunk_data_are_not_believed(fast: bool) -> None:
    """Chunk data holding CRLF "0" CRLF CRLF and CRLF "5" CRLF: before, the first ended the
    message early and what followed was taken for a parse error."""
    data = b"line\r\n0\r\n\r\nmore\r\n5\r\nabc\r\nend"
    parts = [b"p" * 40, data, b"q" * 30]
    body = chunked(parts)
    out = run(body, (20, 50), [], fast)
    assert [e.flags for e in out] == [{"gap"}, set()]
    first = out[0]
    assert first.response is not None
    true = sum(len(p) for p in parts)
    assert true <= first.response.body_size <= true + len(body) - true


@pytest.mark.parametrize("fast", [True, False])
def test_a_hex_looking_line_after_a_hole_does_not_hold_back_the_next_message(fast: bool) -> None:
    """ "cafe" after the hole could begin a 51 KiB chunk: the next status line wins, and at
    close a message whose framing was lost is `gap`, not `incomplete`."""
    body = chunked([b"a" * 50, b"text\r\ncafe\r\nmore"])
    out = run(body, (10, 60), [], fast)
    assert [(e.flags, e.response.body if e.response else None) for e in out] == [
        ({"gap"}, b"a" * 6),
        (set(), b"hello"),
    ]
    st = Http1Stitcher(fast=fast)
    st.feed_request_bytes(GET, 1)
    st.feed_response_bytes(HEAD + b"40\r\nabc", 2)
    st.response_gap(100, 3)
    st.feed_response_bytes(b"xx\r\ncafe\r\nyy", 4)
    out = st.close(5)
    assert [e.flags for e in out] == [{"gap"}]


def test_prove_and_find() -> None:
    assert prove(b"5\r\nabcde\r\n3\r\n", 0) == FOUND
    assert prove(b"5\r\nabcde\r\n3", 0) == MORE
    assert prove(b"5\r\nabcdeXX3\r\n", 0) == NONE
    assert prove(b"5\r\nab", 0) == MORE
    assert prove(b"zz\r\n", 0) == NONE
    assert prove(b"0\r\n\r\n", 0) == FOUND
    assert prove(b"0\r\n\r\nHTTP/1.1 200 OK\r\n", 0) == FOUND
    assert prove(b"0\r\n\r\nmore data", 0) == NONE
    assert prove(b"0\r\nX-T: 1\r\n\r\n", 0) == FOUND
    assert prove(b"0\r\nnot a field\r\n\r\n", 0) == NONE
    assert prove(b"%x\r\n" % (2 << 20), 0) == NONE  # proof longer than the bound
    assert find_chunk_boundary(b"junk\r\n5\r\nabcde\r\n0\r\n\r\n", 0, 24, False) == (FOUND, 6)
    assert find_chunk_boundary(b"5\r\nabcde\r\n0\r\n\r\n", 0, 15, True) == (FOUND, 0)
    # "abcde" could be a size: proven later candidates win over it
    assert find_chunk_boundary(b"5\r\nabcde\r\n0\r\n\r\n", 0, 15, False) == (FOUND, 10)
    assert find_chunk_boundary(b"5\r\nabcde\r\n0\r\n", 0, 13, False) == (MORE, 3)
    assert find_chunk_boundary(b"junk\r\n", 0, 6, False) == (MORE, 6)
    assert find_chunk_boundary(b"junk", 0, 4, False) == (NONE, -1)
