"""Pairing after lost bytes: gaps that swallow whole messages, answers to requests never seen,
parse errors; timestamps keep requests and responses paired right.
"""

from __future__ import annotations

import pytest

from agent.protocols.http1 import Http1Stitcher
from agent.protocols.http1.types import HttpExchange


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
        (None, b"r2", {"gap"}),  # began before request 3: answers the lost one
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
        ("/1", None, {"gap"}),
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
