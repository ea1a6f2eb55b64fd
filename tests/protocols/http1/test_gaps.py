"""Gaps (bytes the capture lost) inside one message: sync kept where the framing allows it
(Content-Length, chunk data, close-delimited), resynchronisation where it does not.
"""

from __future__ import annotations

from agent.protocols.http1 import Http1Stitcher
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
        ("/one", {"gap", "incomplete"}),
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


def test_gap_in_chunked_body_cuts_and_resyncs() -> None:
    st = Http1Stitcher()
    st.feed_request_bytes(GET + GET, 1)
    out = st.feed_response_bytes(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc", 2
    )
    out += st.response_gap(50, 3)
    out += st.feed_response_bytes(b"tail of something\r\n0\r\n\r\n" + OK, 4)
    assert [(e.response.body if e.response else None, e.flags) for e in out] == [
        (b"abc", {"gap", "incomplete"}),
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
