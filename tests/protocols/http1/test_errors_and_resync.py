"""Bad input and resynchronisation: parse errors flagged and skipped, smuggling rejected,
streams that are not HTTP, raise_errors, and captures that begin mid-message (resync).
"""

from __future__ import annotations

import pytest

from agent.protocols.http1 import Http1Stitcher, ParseError, RequestParser
from agent.protocols.http1.types import HttpRequest
from tests.protocols.http1.helpers import GET, OK, run_stitcher


def test_parse_error_mid_stream_is_flagged_and_resyncs() -> None:
    bad = b"GET /bad HTTP/1.1\r\nBad Header: x\r\n\r\n"
    st = Http1Stitcher()
    out = st.feed_request_bytes(GET + bad + GET, 1)
    out += st.feed_response_bytes(
        OK + b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" + OK, 2
    )
    assert [
        (
            e.request.url if e.request else None,
            e.response.status_code if e.response else None,
            e.flags,
        )
        for e in out
    ] == [
        ("/a?x=1", 200, set()),
        ("/bad", 400, {"parse_error", "incomplete"}),
        ("/a?x=1", 200, set()),
    ]
    assert st.stats.parse_errors == 1 and not st.failed


def test_smuggling_cl_and_te_rejected() -> None:
    p = RequestParser(raise_errors=True)
    with pytest.raises(ParseError, match="Content-Length"):
        p.feed(b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n", 1)


def test_not_http_fails() -> None:
    st = Http1Stitcher()
    assert st.feed_request_bytes(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 1) == []
    assert st.failed and st.stats.parse_errors == 1
    st = Http1Stitcher()
    st.feed_request_bytes(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 1)
    assert st.failed


def test_error_mid_chunk_resyncs_within_the_same_chunk() -> None:
    bad = b"GET /bad HTTP/1.1\r\nContent-Length: x\r\n\r\n"
    st = Http1Stitcher()
    out = st.feed_request_bytes(bad + GET, 1)
    out += st.feed_response_bytes(b"HTTP/1.1 400 Bad\r\nContent-Length: 0\r\n\r\n" + OK, 2)
    assert [(e.request.url if e.request else None, e.flags) for e in out] == [
        ("/bad", {"parse_error", "incomplete"}),
        ("/a?x=1", set()),
    ]
    assert st.stats.parse_errors == 1 and st.stats.resyncs == 1


def test_bad_chunk_size_flags_message_and_resyncs() -> None:
    resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n" + OK
    _, out = run_stitcher(GET + GET, resp)
    assert [(e.response.body if e.response else None, e.flags) for e in out] == [
        (b"abc", {"parse_error", "incomplete"}),
        (b"hello", set()),
    ]


def test_raise_errors_reports_messages_before_the_error() -> None:
    p = RequestParser(raise_errors=True)
    with pytest.raises(ParseError) as info:
        p.feed(GET + b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 1)
    # the messages before the error, and the one it hit (flagged) when its start line was valid
    msgs = info.value.messages
    assert all(isinstance(m, HttpRequest) for m in msgs)
    assert [(m.url, m.flags) for m in msgs if isinstance(m, HttpRequest)] == [
        ("/a?x=1", set()),
        ("/", {"parse_error", "incomplete"}),
    ]
    assert "header" in info.value.reason


def test_response_stream_not_http_returns_the_requests_at_once() -> None:
    st = Http1Stitcher()
    st.feed_request_bytes(GET + GET, 1)
    out = st.feed_response_bytes(b"\x00\x00\x12\x04\x00\x00\x00\x00\x00", 2)  # an HTTP/2 frame
    assert st.failed
    assert [(e.request.url if e.request else None, e.response, e.flags) for e in out] == [
        ("/a?x=1", None, {"incomplete"}),
        ("/a?x=1", None, {"incomplete"}),
    ]
    assert st.close(3) == []


def test_resync_skips_partial_message_at_start() -> None:
    st = Http1Stitcher(resync=True)
    out = st.feed_request_bytes(b"dy of an earlier request\r\n" + GET, 1)
    out += st.feed_response_bytes(b"ail of its response" + OK, 2)
    assert len(out) == 1 and out[0].flags == set()
    assert out[0].request is not None and out[0].request.url == "/a?x=1"
    assert out[0].response is not None and out[0].response.body == b"hello"
    assert st.stats.skipped_bytes == len(b"dy of an earlier request\r\n") + len(
        b"ail of its response"
    )


def test_resync_stream_starting_clean_skips_nothing() -> None:
    st, out = run_stitcher(GET, OK, resync=True)
    assert len(out) == 1 and st.stats.skipped_bytes == 0 and st.stats.resyncs == 0


def test_resync_gives_up_on_a_stream_without_http() -> None:
    from agent.protocols.http1.parse import RESYNC_FAIL_BYTES

    st = Http1Stitcher(resync=True)
    blob = bytes(range(256)) * 64  # 16 KiB with no start line in it
    for i in range(RESYNC_FAIL_BYTES // len(blob) + 2):
        st.feed_request_bytes(blob, i)
    assert st.failed
    assert st.feed_request_bytes(GET, 99) == []


def test_resync_answer_to_a_request_lost_before_the_capture() -> None:
    # the capture began inside a request body; its response comes whole: no request for it
    st = Http1Stitcher(resync=True)
    out = st.feed_request_bytes(b"tail of a request body" + GET, 1)
    out += st.feed_response_bytes(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n" + OK, 2)
    assert [
        (e.request.url if e.request else None, e.response.status_code if e.response else None)
        for e in out
    ] == [(None, 201), ("/a?x=1", 200)]
    assert out[0].flags == {"incomplete"} and out[1].flags == set()
    # the capture began inside both: the partial response was the answer, skipped with it
    st = Http1Stitcher(resync=True)
    out = st.feed_request_bytes(b"tail of a request body" + GET, 1)
    out += st.feed_response_bytes(b"tail of its response" + OK, 2)
    assert [(e.request.url if e.request else None, e.flags) for e in out] == [("/a?x=1", set())]
