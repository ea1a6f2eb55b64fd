"""Bytes the capture skipped on purpose past its copy bound (agent/copy_bound.py): inside
a body they cut it (``truncated``, ``bodySize`` whole); elsewhere they are a gap."""

from __future__ import annotations

from agent.protocols.http1 import Http1Stitcher

HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"


def _ask(st: Http1Stitcher) -> None:
    assert st.feed_request_bytes(b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n", 1) == []


def test_a_skip_inside_a_content_length_body_truncates_it() -> None:
    st = Http1Stitcher(max_body=100)
    _ask(st)
    assert st.feed_response_bytes(HEAD + b"x" * 300, 2) == []
    (ex,) = st.response_skip(700, 3)
    assert ex.response is not None
    assert ex.response.body == b"x" * 100
    assert ex.response.body_size == 1000
    assert set(ex.flags) == {"truncated"}


def test_a_skip_before_max_body_keeps_the_prefix_and_truncates() -> None:
    st = Http1Stitcher(max_body=1 << 20)
    _ask(st)
    st.feed_response_bytes(HEAD + b"y" * 10, 2)
    (ex,) = st.response_skip(990, 3)
    assert ex.response is not None
    assert ex.response.body == b"y" * 10
    assert ex.response.body_size == 1000
    assert set(ex.flags) == {"truncated"}
    # the connection goes on: the next exchange is whole
    st.feed_request_bytes(b"GET /b HTTP/1.1\r\nHost: t\r\n\r\n", 4)
    (nxt,) = st.feed_response_bytes(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", 5)
    assert nxt.response is not None and nxt.response.body == b"ok"
    assert not nxt.flags


def test_a_skip_past_the_body_is_a_gap() -> None:
    st = Http1Stitcher(max_body=100)
    _ask(st)
    st.feed_response_bytes(HEAD + b"z" * 300, 2)
    out = st.response_skip(800, 3)  # 100 bytes more than the body: a next head was lost
    assert out and "gap" in out[0].flags


def test_a_skip_inside_a_chunk_keeps_the_chunked_framing() -> None:
    st = Http1Stitcher(max_body=10)
    _ask(st)
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    st.feed_response_bytes(head + b"64\r\n" + b"c" * 20, 2)
    assert st.response_skip(80, 3) == []
    (ex,) = st.feed_response_bytes(b"\r\n0\r\n\r\n", 4)
    assert ex.response is not None
    assert ex.response.body == b"c" * 10
    assert ex.response.body_size == 100
    assert set(ex.flags) == {"truncated"}
