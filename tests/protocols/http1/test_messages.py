"""Message heads and the stream around them: fields and timestamps as on the wire, keep-alive,
pipelining, HTTP/1.0, input types, a parser used alone, and what close returns.
"""

from __future__ import annotations

from agent.protocols.http1 import Http1Stitcher, ResponseParser
from tests.protocols.http1.helpers import GET, OK, run_stitcher


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


def test_memoryview_and_bytearray_input() -> None:
    st = Http1Stitcher()
    st.feed_request_bytes(memoryview(GET), 1)
    out = st.feed_response_bytes(bytearray(OK), 2)
    assert len(out) == 1 and out[0].response is not None and out[0].response.body == b"hello"


def test_response_parser_alone_assumes_get_without_expect() -> None:
    p = ResponseParser()
    msgs = p.feed(OK + OK, 7)
    assert [m.body for m in msgs] == [b"hello", b"hello"]
    p = ResponseParser()
    p.expect("HEAD")
    assert [m.body for m in p.feed(OK[:-5] + OK, 7)] == [b"", b"hello"]


def test_in_message_and_parser_close() -> None:
    p = ResponseParser()
    assert not p.in_message
    p.feed(b"HTTP/1.1 200 OK\r\nContent", 1)
    assert p.in_message
    (msg,) = p.close(2)
    assert msg.status_code == 200 and msg.flags == {"incomplete"}


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
