"""Body framing: chunked with extensions and trailers, close-delimited, Transfer-Encoding without
chunked, HEAD answers, 204 and 304, 1xx interim responses, early answers, max_body.
"""

from __future__ import annotations

import pytest

from agent.protocols.http1 import Http1Stitcher
from tests.protocols.http1.helpers import CHUNKED, GET, OK, run_stitcher


def test_chunked_response_with_extensions_and_trailers() -> None:
    _, out = run_stitcher(GET, CHUNKED)
    r = out[0].response
    assert r is not None
    assert r.body == b"hello, world" and r.body_size == 12
    assert r.headers == [("Transfer-Encoding", "chunked"), ("Trailer", "X-Sum")]
    assert r.trailers == [("X-Sum", "42"), ("X-Other", "a b")]
    assert out[0].flags == set()


def test_chunked_request_with_trailers() -> None:
    req = (
        b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
        b"3\r\nabc\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n"
    )
    _, out = run_stitcher(req, OK)
    q = out[0].request
    assert q is not None
    assert q.body == b"abc0123456789" and q.body_size == 13
    assert q.trailers == [("X-T", "1")]


def test_close_delimited_response_completes_at_close_without_flag() -> None:
    resp = b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nfirst part, second part"
    st, out = run_stitcher(
        b"GET / HTTP/1.0\r\n\r\n", resp, resp_splits=[len(resp) - 11], close=False
    )
    assert out == []
    out = st.close(999)
    assert len(out) == 1
    r = out[0].response
    assert r is not None
    assert r.body == b"first part, second part" and r.body_size == 23
    assert r.flags == set() and out[0].flags == set()
    assert (r.start_ts_ns, r.end_ts_ns) == (200, 201)  # last byte, not the close
    assert r.version == "HTTP/1.0"


def test_te_without_chunked_on_response_reads_to_close() -> None:
    resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n\x1f\x8bzz"
    _, out = run_stitcher(GET, resp)
    assert out[0].response is not None and out[0].response.body == b"\x1f\x8bzz"
    assert out[0].flags == set()


def test_head_response_has_no_body_even_with_content_length() -> None:
    req = b"HEAD /h HTTP/1.1\r\nHost: h\r\n\r\nGET /g HTTP/1.1\r\nHost: h\r\n\r\n"
    resp = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
    )
    _, out = run_stitcher(req, resp)
    assert [(e.request.method, e.response.body) for e in out if e.request and e.response] == [
        ("HEAD", b""),
        ("GET", b"abc"),
    ]
    assert all(e.flags == set() for e in out)


def test_head_after_get_pipelined_and_chunked_head() -> None:
    req = b"GET /1 HTTP/1.1\r\n\r\nHEAD /2 HTTP/1.1\r\n\r\nGET /3 HTTP/1.1\r\n\r\n"
    resp = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nho"
    )
    _, out = run_stitcher(req, resp)
    assert [(e.request.url, e.response.body) for e in out if e.request and e.response] == [
        ("/1", b"hi"),
        ("/2", b""),
        ("/3", b"ho"),
    ]


@pytest.mark.parametrize("status", [204, 304])
def test_204_304_have_no_body(status: int) -> None:
    resp = (
        b"HTTP/1.1 %d X\r\nContent-Length: 10\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz"
        % status
    )
    _, out = run_stitcher(GET + GET, resp)
    assert [(e.response.status_code, e.response.body) for e in out if e.response] == [
        (status, b""),
        (200, b"z"),
    ]


def test_100_continue_interim_is_not_an_exchange() -> None:
    head = b"PUT /f HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n"
    st = Http1Stitcher()
    assert st.feed_request_bytes(head, 1) == []
    assert st.feed_response_bytes(b"HTTP/1.1 100 Continue\r\n\r\n", 2) == []
    assert st.feed_request_bytes(b"data", 3) == []
    out = st.feed_response_bytes(b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", 4)
    assert len(out) == 1
    q, r = out[0].request, out[0].response
    assert q is not None and r is not None
    assert (q.body, q.start_ts_ns, q.end_ts_ns) == (b"data", 1, 3)
    assert (r.status_code, r.start_ts_ns, r.end_ts_ns) == (201, 4, 4)
    assert st.stats.interim == 1 and st.stats.exchanges == 1


def test_several_1xx_before_final_response() -> None:
    resp = (
        b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 102 Processing\r\n\r\n" + OK
    )
    _, out = run_stitcher(GET, resp)
    assert len(out) == 1 and out[0].response is not None
    assert out[0].response.status_code == 200 and out[0].response.body == b"hello"


def test_early_final_response_waits_for_request_end() -> None:
    st = Http1Stitcher()
    st.feed_request_bytes(b"POST /big HTTP/1.1\r\nContent-Length: 6\r\n\r\nabc", 1)
    assert st.feed_response_bytes(b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n", 2) == []
    out = st.feed_request_bytes(b"def", 3)
    assert len(out) == 1 and out[0].request is not None and out[0].response is not None
    assert out[0].request.body == b"abcdef" and out[0].response.status_code == 413


def test_body_truncated_at_max_body() -> None:
    body = bytes(range(256)) * 4
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: 1024\r\n\r\n" + body
    st, out = run_stitcher(GET, resp, resp_splits=[50, 60, 500], max_body=100)
    r = out[0].response
    assert r is not None
    assert r.body == body[:100] and r.body_size == 1024
    assert r.flags == {"truncated"} and out[0].flags == {"truncated"}
    assert st.stats.truncated == 1


def test_chunked_body_truncated_and_exact_limit_not_flagged() -> None:
    _, out = run_stitcher(GET, CHUNKED, max_body=5)
    r = out[0].response
    assert r is not None and r.body == b"hello" and r.body_size == 12 and r.flags == {"truncated"}
    _, out = run_stitcher(GET, CHUNKED, max_body=12)
    assert out[0].response is not None and out[0].response.flags == set()
