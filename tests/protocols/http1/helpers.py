"""Feeding helpers shared by the HTTP/1.x tests."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from agent.protocols.http1 import Http1Stitcher
from agent.protocols.http1.types import HttpExchange

# A request and its answer, and a chunked answer with extensions and trailers.
GET = b"GET /a?x=1 HTTP/1.1\r\nHost: example.com\r\nX-Mixed-Case: V1\r\nAccept: */*\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"
    b'5;name=val;q="a b"\r\nhello\r\n'
    b"7\r\n, world\r\n"
    b"0\r\nX-Sum: 42\r\nX-Other: a b\r\n\r\n"
)


def run_stitcher(
    req: bytes,
    resp: bytes,
    *,
    req_splits: Sequence[int] = (),
    resp_splits: Sequence[int] = (),
    close: bool = True,
    **kwargs: object,
) -> tuple[Http1Stitcher, list[HttpExchange]]:
    """Feed all request bytes, then all response bytes, split at the given offsets.

    Chunk i of the request stream gets ts 100 + i, chunk i of the response stream 200 + i,
    close gets ts 999.
    """
    st = Http1Stitcher(**kwargs)  # type: ignore[arg-type]
    out: list[HttpExchange] = []
    for i, piece in enumerate(split(req, req_splits)):
        out += st.feed_request_bytes(piece, 100 + i)
    for i, piece in enumerate(split(resp, resp_splits)):
        out += st.feed_response_bytes(piece, 200 + i)
    if close:
        out += st.close(999)
    return st, out


def split(data: bytes, offsets: Sequence[int]) -> list[bytes]:
    cuts = [0, *sorted(o for o in offsets if 0 < o < len(data)), len(data)]
    return [data[a:b] for a, b in itertools.pairwise(cuts) if b > a]


def summary(ex: HttpExchange) -> tuple[object, ...]:
    """Everything but timestamps, for split-invariance comparisons."""
    q, r = ex.request, ex.response
    return (
        None
        if q is None
        else (q.method, q.url, q.version, q.headers, q.body, q.body_size, q.trailers, q.flags),
        None
        if r is None
        else (
            r.status_code,
            r.status_message,
            r.version,
            r.headers,
            r.body,
            r.body_size,
            r.trailers,
            r.flags,
        ),
        ex.flags,
    )
