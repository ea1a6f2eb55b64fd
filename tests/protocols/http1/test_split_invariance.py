"""Split invariance: the same records whatever the chunk boundaries (every byte offset, one
byte at a time) and with or without the llhttp fast path.
"""

from __future__ import annotations

import pytest

from tests.protocols.http1.helpers import CHUNKED, GET, OK, run_stitcher, split, summary

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
