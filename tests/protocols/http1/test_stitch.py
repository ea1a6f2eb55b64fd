"""Byte-exact unit tests of the HTTP/1.x parsers and stitcher (agent.protocols.http1)."""

from __future__ import annotations

import pytest

from agent.protocols.http1 import (
    Http1Stitcher,
    ParseError,
    RequestParser,
    ResponseParser,
)
from agent.protocols.http1.types import HttpExchange, HttpRequest
from tests.protocols.http1.helpers import run_stitcher, split, summary

GET = b"GET /a?x=1 HTTP/1.1\r\nHost: example.com\r\nX-Mixed-Case: V1\r\nAccept: */*\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"


def test_simple_get_exact_fields_and_timestamps() -> None:
    st, out = run_stitcher(GET, OK, close=False)
    assert len(out) == 1
    ex = out[0]
    q, r = ex.request, ex.response
    assert q is not None and r is not None
    assert (q.method, q.url, q.version) == ("GET", "/a?x=1", "HTTP/1.1")
    assert q.headers == [("Host", "example.com"), ("X-Mixed-Case", "V1"), ("Accept", "*/*")]
    assert (q.body, q.body_size, q.trailers, q.flags) == (b"", 0, [], set())
    assert (q.start_ts_ns, q.end_ts_ns) == (100, 100)
    assert (r.status_code, r.status_message, r.version) == (200, "OK", "HTTP/1.1")
    assert r.headers == [("Content-Type", "text/plain"), ("Content-Length", "5")]
    assert (r.body, r.body_size, r.flags) == (b"hello", 5, set())
    assert (r.start_ts_ns, r.end_ts_ns) == (200, 200)
    assert ex.flags == set()
    assert st.stats.messages == 2 and st.stats.exchanges == 1 and st.stats.parse_errors == 0
    assert st.close(300) == []


def test_timestamps_follow_first_and_last_byte() -> None:
    # request split inside the start line and at the end; response split in the body
    _, out = run_stitcher(GET, OK, req_splits=[3, len(GET) - 1], resp_splits=[len(OK) - 2])
    q, r = out[0].request, out[0].response
    assert q is not None and r is not None
    assert (q.start_ts_ns, q.end_ts_ns) == (100, 102)
    assert (r.start_ts_ns, r.end_ts_ns) == (200, 201)


def test_latin1_bytes_and_original_case_kept() -> None:
    req = b"PUT /caf\xe9 HTTP/1.1\r\nX-Name: v\xe4l\xfc\xe9\r\ncontent-LENGTH: 2\r\n\r\n\x00\xff"
    _, out = run_stitcher(req, b"HTTP/1.1 204 No Content\r\n\r\n")
    q = out[0].request
    assert q is not None
    assert q.url == "/caf\xe9"
    assert q.headers == [("X-Name", "v\xe4l\xfc\xe9"), ("content-LENGTH", "2")]
    assert q.body == b"\x00\xff"


def test_header_value_leading_whitespace_dropped_trailing_kept() -> None:
    # llhttp does the same; replay re-sends the value as it was
    req = b"GET / HTTP/1.1\r\nA:\t  x  y \t\r\nB:\r\nC: \r\n\r\n"
    _, out = run_stitcher(req, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert out[0].request is not None
    assert out[0].request.headers == [("A", "x  y \t"), ("B", ""), ("C", "")]


CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
    b'5;name=val;q="a b"\r\nhello\r\n'
    b"7\r\n, world\r\n"
    b"0\r\nX-Sum: 42\r\nX-Other: a b\r\n\r\n"
)


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


def test_pipelining_and_keep_alive() -> None:
    reqs = b"".join(b"GET /%d HTTP/1.1\r\nHost: h\r\n\r\n" % i for i in range(5))
    resps = b"".join(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n%d" % i for i in range(5))
    st, out = run_stitcher(reqs, resps)
    assert [(e.request.url, e.response.body) for e in out if e.request and e.response] == [
        (f"/{i}", str(i).encode()) for i in range(5)
    ]
    assert st.stats.exchanges == 5 and st.stats.messages == 10


def test_http10_exchange() -> None:
    _, out = run_stitcher(
        b"GET /old HTTP/1.0\r\nUser-Agent: x\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    )
    assert out[0].request is not None and out[0].request.version == "HTTP/1.0"
    assert out[0].response is not None and out[0].response.version == "HTTP/1.0"


def test_empty_lines_between_messages_tolerated() -> None:
    _, out = run_stitcher(b"\r\n" + GET + b"\r\n" + GET, OK + OK)
    assert len(out) == 2 and all(e.flags == set() for e in out)


def test_websocket_upgrade_stops_parsing() -> None:
    req = (
        b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\n"
        b"Upgrade: websocket\r\n\r\n\x81\x05hello"
    )
    resp = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        b"\x81\x02hi"
    )
    st, out = run_stitcher(req, resp)
    assert len(out) == 1
    assert out[0].flags == {"upgrade"}
    assert out[0].response is not None and out[0].response.status_code == 101
    assert st.upgraded and not st.failed
    assert st.feed_request_bytes(b"GET / HTTP/1.1\r\n\r\n", 5) == []
    assert st.stats.parse_errors == 0


def test_upgrade_refused_continues_as_http() -> None:
    req = (
        b"GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\nGET /next HTTP/1.1\r\n\r\n"
    )
    resp = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"
        + b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb"
    )
    st = Http1Stitcher()
    out = st.feed_request_bytes(req, 1)
    out += st.feed_response_bytes(resp, 2)
    assert [(e.request.url, e.response.body) for e in out if e.request and e.response] == [
        ("/ws", b"a"),
        ("/next", b"b"),
    ]
    assert not st.upgraded


def test_connect_2xx_is_upgrade_and_407_is_not() -> None:
    req = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
    st, out = run_stitcher(
        req + b"\x16\x03\x01garbage", b"HTTP/1.1 200 Connection established\r\n\r\n\x16\x03\x03"
    )
    assert len(out) == 1 and out[0].flags == {"upgrade"} and st.upgraded
    assert out[0].request is not None and out[0].request.url == "example.com:443"
    st, out = run_stitcher(
        req + GET,
        b"HTTP/1.1 407 Proxy Auth\r\nContent-Length: 2\r\n\r\nno" + OK,
    )
    assert [e.response.status_code for e in out if e.response] == [407, 200]
    assert not st.upgraded and st.stats.parse_errors == 0


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


def test_close_flushes_requests_without_response() -> None:
    st = Http1Stitcher()
    assert st.feed_request_bytes(GET + b"GET /partial HTTP/1.1\r\nHo", 1) == []
    out = st.close(9)
    assert [(e.request.url if e.request else None, e.response, e.flags) for e in out] == [
        ("/a?x=1", None, {"incomplete"}),
        ("/partial", None, {"incomplete"}),
    ]
    st = Http1Stitcher()
    st.feed_request_bytes(b"POST /p HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nX-B", 1)
    (ex,) = st.close(2)
    assert ex.request is not None and ex.request.headers == [("Host", "h"), ("X-A", "1")]
    assert (ex.request.start_ts_ns, ex.request.end_ts_ns) == (1, 1)
    assert st.close(10) == []


def test_close_mid_response_body_is_incomplete() -> None:
    resp = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc"
    st, out = run_stitcher(GET, resp)
    assert len(out) == 1
    r = out[0].response
    assert r is not None and r.body == b"abc" and r.body_size == 3
    assert r.flags == {"incomplete"} and out[0].flags == {"incomplete"}
    assert st.stats.incomplete == 1


def test_response_without_request_is_incomplete_exchange() -> None:
    st = Http1Stitcher()
    out = st.feed_response_bytes(OK, 1)
    assert len(out) == 1 and out[0].request is None and out[0].flags == {"incomplete"}


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


def test_response_parser_alone_assumes_get_without_expect() -> None:
    p = ResponseParser()
    msgs = p.feed(OK + OK, 7)
    assert [m.body for m in msgs] == [b"hello", b"hello"]
    p = ResponseParser()
    p.expect("HEAD")
    assert [m.body for m in p.feed(OK[:-5] + OK, 7)] == [b"", b"hello"]


def test_request_parser_alone_holds_after_upgrade() -> None:
    p = RequestParser()
    msgs = p.feed(b"GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n" + GET, 1)
    assert len(msgs) == 1 and p.upgrade_pending
    assert [m.url for m in p.resume()] == ["/a?x=1"]


# -- split invariance -------------------------------------------------------------------------

CASES = {
    "get": (GET, OK),
    "chunked": (GET, CHUNKED),
    "pipelined-head": (
        b"GET /1 HTTP/1.1\r\n\r\nHEAD /2 HTTP/1.1\r\n\r\n"
        b"POST /3 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2;e=1\r\nab\r\n0\r\nT: v\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"
        b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n"
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
    ),
    "close-delimited": (
        b"GET / HTTP/1.0\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\nuntil close",
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_split_at_every_byte_boundary(name: str) -> None:
    req, resp = CASES[name]
    _, whole = run_stitcher(req, resp)
    expected = [summary(e) for e in whole]
    assert expected and all(e.flags == set() for e in whole)
    _, own = run_stitcher(req, resp, fast=False)
    assert [summary(e) for e in own] == expected
    for i in range(1, len(req)):
        _, out = run_stitcher(req, resp, req_splits=[i])
        assert [summary(e) for e in out] == expected, f"request split at {i}"
    for i in range(1, len(resp)):
        _, out = run_stitcher(req, resp, resp_splits=[i])
        assert [summary(e) for e in out] == expected, f"response split at {i}"
    # one byte at a time
    _, out = run_stitcher(req, resp, req_splits=range(len(req)), resp_splits=range(len(resp)))
    assert [summary(e) for e in out] == expected


def test_split_helper() -> None:
    assert split(b"abcd", [1, 3]) == [b"a", b"bc", b"d"]


# -- the llhttp fast path and nodetap's own framing ---------------------------------------------


def test_fast_path_takes_whole_message_chunks() -> None:
    reqs = [GET] * 5
    st = Http1Stitcher()
    out = []
    for i, q in enumerate(reqs):
        out += st.feed_request_bytes(q, 2 * i)
        out += st.feed_response_bytes(OK, 2 * i + 1)
    assert len(out) == 5 and st.stats.fast_chunks == 10
    st2, out2 = run_stitcher(GET * 5, OK * 5, fast=False)
    assert st2.stats.fast_chunks == 0
    assert [summary(e) for e in out2] == [summary(e) for e in out]


def test_fast_path_declines_what_needs_offsets() -> None:
    # HEAD answer pending, a message running past the chunk, an upgrade, a custom method:
    # all parsed by nodetap's own framing, with the same results as the unit tests above
    st = Http1Stitcher()
    st.feed_request_bytes(b"HEAD / HTTP/1.1\r\n\r\n", 1)
    out = st.feed_response_bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", 2)
    assert len(out) == 1 and out[0].response is not None and out[0].response.body == b""
    assert st.stats.fast_chunks == 1  # the request only
    st = Http1Stitcher()
    out = st.feed_request_bytes(b"PURGEALL /x HTTP/1.1\r\n\r\n", 1)  # llhttp: unknown method
    out += st.feed_response_bytes(OK, 2)
    assert [e.request.method for e in out if e.request] == ["PURGEALL"]
    assert st.stats.parse_errors == 0 and st.stats.fast_chunks == 1  # the response


def test_fast_path_backs_off_when_chunks_split_messages() -> None:
    st = Http1Stitcher()
    n = 0
    for i in range(40):  # headers and body in separate writes: the fast path cannot take them
        st.feed_request_bytes(b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n", i)
        st.feed_request_bytes(b"ab", i)
        n += len(st.feed_response_bytes(OK, i))
    assert n == 40 and st.stats.parse_errors == 0
    assert st.stats.fast_chunks >= 30  # responses (whole) still go fast


# -- errors, resync, gaps: the less common paths ------------------------------------------------


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


def test_resync_gives_up_on_a_stream_without_http() -> None:
    from agent.protocols.http1.parse import RESYNC_FAIL_BYTES

    st = Http1Stitcher(resync=True)
    blob = bytes(range(256)) * 64  # 16 KiB with no start line in it
    for i in range(RESYNC_FAIL_BYTES // len(blob) + 2):
        st.feed_request_bytes(blob, i)
    assert st.failed
    assert st.feed_request_bytes(GET, 99) == []


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


def test_gap_while_upgrade_pending_then_refused() -> None:
    st = Http1Stitcher()
    st.feed_request_bytes(b"GET /ws HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: ws\r\n\r\n", 1)
    st.request_gap(10, 2)
    st.feed_request_bytes(GET, 3)
    out = st.feed_response_bytes(b"HTTP/1.1 400 No\r\nContent-Length: 0\r\n\r\n" + OK, 4)
    assert [(e.request.url if e.request else None, e.flags) for e in out] == [
        ("/ws", set()),
        ("/a?x=1", {"gap"}),
    ]


def test_memoryview_and_bytearray_input() -> None:
    st = Http1Stitcher()
    st.feed_request_bytes(memoryview(GET), 1)
    out = st.feed_response_bytes(bytearray(OK), 2)
    assert len(out) == 1 and out[0].response is not None and out[0].response.body == b"hello"


def test_in_message_and_parser_close() -> None:
    p = ResponseParser()
    assert not p.in_message
    p.feed(b"HTTP/1.1 200 OK\r\nContent", 1)
    assert p.in_message
    (msg,) = p.close(2)
    assert msg.status_code == 200 and msg.flags == {"incomplete"}


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


def test_bytes_held_after_an_upgrade_request_are_bounded() -> None:
    from agent.protocols.http1.parse import HELD_MAX

    st = Http1Stitcher()
    st.feed_request_bytes(b"GET /ws HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: ws\r\n\r\n", 1)
    blob = b"x" * (64 * 1024)
    for i in range(HELD_MAX // len(blob) + 4):
        st.feed_request_bytes(blob, 2 + i)
    held = st._req._held_bytes
    assert held <= HELD_MAX
    out = st.feed_response_bytes(b"HTTP/1.1 101 Switching\r\nUpgrade: ws\r\n\r\n", 99)
    assert len(out) == 1 and out[0].flags == {"upgrade"} and st.upgraded


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


# -- gaps that swallow whole messages: timestamps keep the pairs right ----------------------


def _seq(url: str) -> bytes:
    return b"GET /%s HTTP/1.1\r\nHost: h\r\n\r\n" % url.encode()


def _ok(body: str) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body.encode())


def _pairs(out: list[HttpExchange]) -> list[tuple[object, object, set[str]]]:
    return [
        (e.request.url if e.request else None, e.response.body if e.response else None, e.flags)
        for e in out
    ]


@pytest.mark.parametrize("fast", [True, False])
def test_request_gap_that_lost_a_whole_request(fast: bool) -> None:
    # sequential traffic, one chunk per message, timestamps as a capture gives them
    st = Http1Stitcher(fast=fast)
    out = st.feed_request_bytes(_seq("1"), 10)
    out += st.feed_response_bytes(_ok("r1"), 11)
    out += st.request_gap(len(_seq("2")), 20)  # request 2 lost
    out += st.feed_response_bytes(_ok("r2"), 21)
    out += st.feed_request_bytes(_seq("3"), 30)
    out += st.feed_response_bytes(_ok("r3"), 31)
    assert _pairs(out) == [
        ("/1", b"r1", set()),
        (None, b"r2", {"incomplete"}),  # began before request 3: answers the lost one
        ("/3", b"r3", {"gap"}),
    ]


@pytest.mark.parametrize("fast", [True, False])
def test_response_gap_that_lost_a_whole_response(fast: bool) -> None:
    st = Http1Stitcher(fast=fast)
    out = st.feed_request_bytes(_seq("1"), 10)
    out += st.response_gap(len(_ok("r1")), 11)  # response 1 lost
    out += st.feed_request_bytes(_seq("2"), 20)
    out += st.feed_response_bytes(_ok("r2"), 21)
    out += st.feed_request_bytes(_seq("3"), 30)
    out += st.feed_response_bytes(_ok("r3"), 31)
    assert _pairs(out) == [
        ("/1", None, {"incomplete", "gap"}),
        ("/2", b"r2", {"gap"}),
        ("/3", b"r3", set()),
    ]


@pytest.mark.parametrize("split_after_head", [False, True])
def test_answer_to_an_unseen_head_request_has_no_body(split_after_head: bool) -> None:
    head_answer = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
    st = Http1Stitcher(resync=True)
    out = st.feed_request_bytes(b"rest of a HEAD request\r\n\r\n", 1)
    if split_after_head:  # the next bytes come in a later chunk: they decide
        out += st.feed_response_bytes(head_answer, 2)
        out += st.feed_request_bytes(_seq("next"), 3)
        out += st.feed_response_bytes(_ok("n"), 4)
    else:
        out += st.feed_request_bytes(_seq("next"), 3)
        out += st.feed_response_bytes(head_answer + _ok("n"), 4)
    assert _pairs(out) == [(None, b"", {"incomplete"}), ("/next", b"n", set())]
    assert out[0].response is not None and out[0].response.body_size == 0


def test_answer_to_an_unseen_get_request_keeps_its_body() -> None:
    st = Http1Stitcher(resync=True)
    out = st.feed_request_bytes(b"rest of a GET request\r\n\r\n", 1)
    out += st.feed_response_bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n", 2)
    out += st.feed_response_bytes(b"body", 3)
    out += st.feed_request_bytes(_seq("next"), 4)
    out += st.feed_response_bytes(_ok("n"), 5)
    assert _pairs(out) == [(None, b"body", {"incomplete"}), ("/next", b"n", set())]


def test_unseen_request_answer_then_close() -> None:
    st = Http1Stitcher(resync=True)
    st.feed_request_bytes(b"tail\r\n\r\n", 1)
    st.feed_response_bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n", 2)
    out = st.close(3)
    assert _pairs(out) == [(None, b"", {"incomplete"})]
    assert out[0].response is not None and out[0].response.end_ts_ns == 2


def test_pairs_after_a_response_parse_error_follow_timestamps() -> None:
    st = Http1Stitcher()
    out = st.feed_request_bytes(_seq("1"), 10)
    out += st.feed_response_bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nr1", 11)
    out += st.feed_request_bytes(_seq("2"), 20)
    out += st.feed_response_bytes(b"HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n", 21)  # broken
    out += st.feed_request_bytes(_seq("3"), 30)
    out += st.feed_response_bytes(_ok("r3"), 31)
    assert _pairs(out) == [
        ("/1", b"r1", set()),
        ("/2", b"", {"parse_error", "incomplete"}),
        ("/3", b"r3", set()),
    ]


@pytest.mark.parametrize("fast", [True, False])
def test_an_idle_connection_keeps_no_message_alive(fast: bool) -> None:
    import gc

    st = Http1Stitcher(fast=fast)
    body = b"x" * 5000
    out = st.feed_request_bytes(GET, 1)
    out += st.feed_response_bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + body, 2)
    assert len(out) == 1
    resp = out[0].response
    del out
    gc.collect()
    holders = [r for r in gc.get_referrers(resp) if r is not locals()]
    assert holders == [], holders  # only this test holds the response
    from agent.protocols.http1 import fastpath, parse

    assert parse._SPENT == [] and fastpath._SPENT == [] and fastpath._SPENT_PARTS == []
