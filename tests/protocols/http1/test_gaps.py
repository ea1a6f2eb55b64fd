"""Gaps (bytes the capture lost) inside one message: sync kept where the framing allows it
(Content-Length, chunk data, close-delimited), resynchronisation where it does not.
"""

from __future__ import annotations

from agent.protocols.http1 import Http1Stitcher
from agent.protocols.http1.types import HttpExchange
from tests.protocols.http1.helpers import GET, OK


def test_gap_inside_content_length_body_keeps_sync() -> None:
    st = Http1Stitcher()
    st.feed_request_bytes(GET + GET, 1)
    out = st.feed_response_bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 2)
    out += st.response_gap(4, 3)
    out += st.feed_response_bytes(b"xyz" + OK, 4)
    assert len(out) == 2
    first, second = out
    assert first.response is not None and second.response is not None
    assert first.flags == {"gap"} and first.response.body_size == 10
    assert first.response.body == b"abc"  # bytes after the hole are not stored
    assert second.flags == set() and second.response.body == b"hello"
    assert st.stats.gaps == 1 and st.stats.gap_bytes == 4


def test_gap_in_headers_resyncs_on_next_request() -> None:
    st = Http1Stitcher()
    out = st.feed_request_bytes(b"GET /one HTTP/1.1\r\nHost: h", 1)
    out += st.request_gap(30, 2)
    out += st.feed_request_bytes(b"ost: lost tail\r\n\r\n" + GET, 3)
    out += st.feed_response_bytes(OK + OK, 4)
    out += st.close(5)
    assert [(e.request.url if e.request else None, e.flags) for e in out] == [
        ("/one", {"gap"}),  # lost bytes: "gap", not "incomplete"
        ("/a?x=1", set()),
    ]
    assert st.stats.resyncs == 1 and st.stats.skipped_bytes == len(b"ost: lost tail\r\n\r\n")


def test_gap_between_messages_flags_next_message() -> None:
    st = Http1Stitcher()
    out = st.feed_request_bytes(GET, 1)
    out += st.feed_response_bytes(OK, 2)
    out += st.request_gap(100, 3)
    out += st.feed_request_bytes(GET, 4)
    out += st.feed_response_bytes(OK, 5)
    assert [e.flags for e in out] == [set(), {"gap"}]


def test_gap_that_loses_the_chunk_framing_finds_the_last_chunk() -> None:
    st = Http1Stitcher()
    st.feed_request_bytes(GET + GET, 1)
    out = st.feed_response_bytes(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc", 2
    )
    out += st.response_gap(50, 3)
    out += st.feed_response_bytes(b"tail\r\n5\r\nabcde\r\n0\r", 4)
    assert out == []  # the last chunk is not complete yet
    out += st.feed_response_bytes(b"\n\r\n", 5)
    assert [(e.response.body if e.response else None, e.flags) for e in out] == [(b"abc", {"gap"})]
    assert out[0].response is not None and out[0].response.end_ts_ns == 5
    out = st.feed_response_bytes(OK, 6)
    assert [(e.response.body if e.response else None, e.flags) for e in out] == [(b"hello", set())]


def test_gap_in_chunked_body_cuts_and_resyncs() -> None:
    st = Http1Stitcher()
    st.feed_request_bytes(GET + GET, 1)
    out = st.feed_response_bytes(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc", 2
    )
    out += st.response_gap(50, 3)
    out += st.feed_response_bytes(b"tail of something\r\n0\r\n\r\n" + OK, 4)
    assert [(e.response.body if e.response else None, e.flags) for e in out] == [
        (b"abc", {"gap"}),
        (b"hello", set()),
    ]


def test_gap_inside_chunk_data_keeps_sync() -> None:
    st = Http1Stitcher()
    st.feed_request_bytes(GET + GET, 1)
    out = st.feed_response_bytes(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\nab", 2)
    out += st.response_gap(5, 3)
    out += st.feed_response_bytes(b"xyz\r\n2\r\nzz\r\n0\r\n\r\n" + OK, 4)
    assert [(e.response.body if e.response else None, e.flags) for e in out] == [
        (b"ab", {"gap"}),
        (b"hello", set()),
    ]
    assert out[0].response is not None and out[0].response.body_size == 12


def test_gap_in_close_delimited_body_counts_the_missing_bytes() -> None:
    st = Http1Stitcher()
    st.feed_request_bytes(b"GET / HTTP/1.0\r\n\r\n", 1)
    st.feed_response_bytes(b"HTTP/1.0 200 OK\r\n\r\nabc", 2)
    st.response_gap(100, 3)
    st.feed_response_bytes(b"def", 4)
    out = st.close(5)
    r = out[0].response
    assert r is not None and r.body == b"abc" and r.body_size == 106 and out[0].flags == {"gap"}


def test_answers_lost_in_a_gap_at_the_end_are_gap_not_incomplete() -> None:
    # issue 18: bytes lost (a hole up to the close) are "gap"; "incomplete" is only for
    # a connection that really ended early
    st = Http1Stitcher()
    out = st.feed_request_bytes(GET + GET, 1)
    out += st.feed_response_bytes(OK, 2)
    out += st.response_gap(40, 3)
    out += st.close(4)
    assert [e.flags for e in out] == [set(), {"gap"}]
    st = Http1Stitcher()
    out = st.feed_request_bytes(GET, 1)
    out += st.close(2)
    assert [e.flags for e in out] == [{"incomplete"}]


def _big_head(n: int, url: str = "/big") -> bytes:
    lines = b"".join(b"X-Filler-%d: %s\r\n" % (i, b"v" * 1000) for i in range(n // 1000))
    return b"GET " + url.encode() + b" HTTP/1.1\r\nHost: h\r\n" + lines + b"\r\n"


def test_a_100_kib_header_section_in_pieces_is_parsed() -> None:
    head = _big_head(100 << 10)
    st = Http1Stitcher()
    out: list[HttpExchange] = []
    for i in range(0, len(head), 16384):
        out += st.feed_request_bytes(head[i : i + 16384], 1)
    out += st.feed_response_bytes(OK, 2)
    out += st.feed_request_bytes(GET, 3)
    out += st.feed_response_bytes(OK, 4)
    assert not st.failed
    assert [(e.request.url if e.request else None, e.flags) for e in out] == [
        ("/big", set()),
        ("/a?x=1", set()),
    ]
    assert out[0].request is not None and len(out[0].request.headers) == 1 + 102


def test_a_header_section_past_the_bound_is_flagged_and_the_next_message_parsed() -> None:
    head = _big_head(1100 << 10)
    st = Http1Stitcher()
    out: list[HttpExchange] = []
    for i in range(0, len(head), 16384):
        out += st.feed_request_bytes(head[i : i + 16384], 1)
    out += st.feed_response_bytes(b"HTTP/1.1 431 Too Large\r\nContent-Length: 0\r\n\r\n", 2)
    out += st.feed_request_bytes(GET, 3)
    out += st.feed_response_bytes(OK, 4)
    assert not st.failed
    got = [(e.request.url if e.request else None, e.response, e.flags) for e in out]
    assert [(u, r.status_code if r else None, f) for u, r, f in got] == [
        ("/big", 431, {"truncated"}),
        ("/a?x=1", 200, set()),
    ]
