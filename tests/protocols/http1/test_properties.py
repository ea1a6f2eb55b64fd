"""Property tests: nothing raises out of the stitcher, and splitting never changes the result."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.protocols.http1 import Http1Stitcher
from tests.protocols.http1.helpers import run_stitcher, split, summary

# NODETAP_HYPOTHESIS_EXAMPLES=5000 for a longer hunt
SETTINGS = settings(
    max_examples=int(os.environ.get("NODETAP_HYPOTHESIS_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

TOKEN = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_",
    min_size=1,
    max_size=12,
)
VALUE = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=30,
).map(str.strip)
PATH = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789/?=&%.-_~", max_size=30).map(
    lambda s: "/" + s
)
BODY = st.binary(max_size=300)


@dataclass
class Pair:
    method: str
    url: str
    req_headers: list[tuple[str, str]]
    req_body: bytes
    req_chunked: bool
    status: int
    resp_headers: list[tuple[str, str]]
    resp_body: bytes
    resp_chunked: bool


def _headers(names: list[str], values: list[str]) -> list[tuple[str, str]]:
    skip = {"content-length", "transfer-encoding", "connection", "upgrade"}
    return [(n, v) for n, v in zip(names, values, strict=False) if n.lower() not in skip]


@st.composite
def pairs(draw: st.DrawFn) -> Pair:
    method = draw(st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]))
    status = draw(st.sampled_from([200, 201, 204, 301, 304, 404, 500]))
    n = draw(st.integers(0, 5))
    return Pair(
        method=method,
        url=draw(PATH),
        req_headers=_headers(
            draw(st.lists(TOKEN, min_size=n, max_size=n)),
            draw(st.lists(VALUE, min_size=n, max_size=n)),
        ),
        req_body=draw(BODY),
        req_chunked=draw(st.booleans()),
        status=status,
        resp_headers=_headers(draw(st.lists(TOKEN, max_size=4)), draw(st.lists(VALUE, max_size=4))),
        resp_body=b"" if method == "HEAD" or status in (204, 304) else draw(BODY),
        resp_chunked=draw(st.booleans()),
    )


def _chunked(body: bytes, sizes: list[int]) -> bytes:
    out = b""
    pos = 0
    for size in sizes:
        if pos >= len(body):
            break
        piece = body[pos : pos + size]
        out += b"%x;ext=1\r\n%s\r\n" % (len(piece), piece)
        pos += size
    if pos < len(body):
        out += b"%x\r\n%s\r\n" % (len(body) - pos, body[pos:])
    return out + b"0\r\nX-Trailer: t\r\n\r\n"


def _encode(p: Pair) -> tuple[bytes, bytes]:
    hdr = "".join(f"{n}: {v}\r\n" for n, v in p.req_headers)
    if p.req_chunked:
        req = f"{p.method} {p.url} HTTP/1.1\r\n{hdr}Transfer-Encoding: chunked\r\n\r\n".encode(
            "latin-1"
        )
        req += _chunked(p.req_body, [7, 100])
    else:
        req = (
            f"{p.method} {p.url} HTTP/1.1\r\n{hdr}Content-Length: {len(p.req_body)}\r\n\r\n".encode(
                "latin-1"
            )
        )
        req += p.req_body
    hdr = "".join(f"{n}: {v}\r\n" for n, v in p.resp_headers)
    no_body = p.method == "HEAD" or p.status in (204, 304)
    if p.resp_chunked and not no_body:
        resp = f"HTTP/1.1 {p.status} X\r\n{hdr}Transfer-Encoding: chunked\r\n\r\n".encode("latin-1")
        resp += _chunked(p.resp_body, [1, 50])
    else:
        length = 9 if no_body else len(p.resp_body)  # HEAD/204/304: the length is not sent
        resp = f"HTTP/1.1 {p.status} X\r\n{hdr}Content-Length: {length}\r\n\r\n".encode("latin-1")
        resp += p.resp_body
    return req, resp


@SETTINGS
@given(st.lists(pairs(), min_size=1, max_size=4), st.data())
def test_valid_exchanges_round_trip_and_split_invariant(
    ps: list[Pair], data: st.DataObject
) -> None:
    encoded = [_encode(p) for p in ps]
    req = b"".join(r for r, _ in encoded)
    resp = b"".join(r for _, r in encoded)
    st_, whole = run_stitcher(req, resp)
    assert st_.stats.parse_errors == 0
    assert len(whole) == len(ps)
    for ex, p in zip(whole, ps, strict=True):
        assert ex.flags == set()
        q, r = ex.request, ex.response
        assert q is not None and r is not None
        assert (q.method, q.url, q.body) == (p.method, p.url, p.req_body)
        assert q.headers[: len(p.req_headers)] == p.req_headers
        assert (r.status_code, r.body) == (p.status, p.resp_body)
        assert r.headers[: len(p.resp_headers)] == p.resp_headers
    # nodetap's own framing alone (no llhttp fast path) gives the same records
    _, own = run_stitcher(req, resp, fast=False)
    assert [summary(e) for e in own] == [summary(e) for e in whole]
    assert [
        (e.request.start_ts_ns, e.response.end_ts_ns) for e in own if e.request and e.response
    ] == [(e.request.start_ts_ns, e.response.end_ts_ns) for e in whole if e.request and e.response]
    req_cuts = data.draw(st.lists(st.integers(1, max(1, len(req) - 1)), max_size=8))
    resp_cuts = data.draw(st.lists(st.integers(1, max(1, len(resp) - 1)), max_size=8))
    _, split = run_stitcher(req, resp, req_splits=req_cuts, resp_splits=resp_cuts)
    assert [summary(e) for e in split] == [summary(e) for e in whole]


@SETTINGS
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["req", "resp", "req_gap", "resp_gap"]),
            st.binary(max_size=200),
            st.integers(1, 5000),
        ),
        max_size=12,
    ),
    st.booleans(),
)
def test_random_bytes_never_raise(events: list[tuple[str, bytes, int]], resync: bool) -> None:
    s = Http1Stitcher(max_body=64, resync=resync)
    for ts, (kind, blob, n) in enumerate(events):
        if kind == "req":
            s.feed_request_bytes(blob, ts)
        elif kind == "resp":
            s.feed_response_bytes(blob, ts)
        elif kind == "req_gap":
            s.request_gap(n, ts)
        else:
            s.response_gap(n, ts)
    s.close(10**6)
    assert s.stats.messages >= 0


@SETTINGS
@given(
    st.lists(pairs(), min_size=1, max_size=3),
    st.lists(st.tuples(st.integers(0, 10**6), st.binary(min_size=1, max_size=40)), max_size=4),
    st.lists(st.integers(0, 10**6), max_size=6),
    st.booleans(),
)
def test_valid_messages_with_garbage_and_gaps_never_raise(
    ps: list[Pair], garbage: list[tuple[int, bytes]], cuts: list[int], resync: bool
) -> None:
    encoded = [_encode(p) for p in ps]
    streams = [
        bytearray(b"".join(r for r, _ in encoded)),
        bytearray(b"".join(r for _, r in encoded)),
    ]
    for i, (at, blob) in enumerate(garbage):
        target = streams[i % 2]
        pos = at % (len(target) + 1)
        target[pos:pos] = blob
    s = Http1Stitcher(max_body=100, resync=resync)
    out = []
    req, resp = bytes(streams[0]), bytes(streams[1])

    for i, piece in enumerate(split(req, [c % (len(req) + 1) for c in cuts])):
        out += s.feed_request_bytes(piece, i)
        if i == 1:
            out += s.request_gap(len(piece), i)
    for i, piece in enumerate(split(resp, [c % (len(resp) + 1) for c in cuts])):
        out += s.feed_response_bytes(piece, i)
    out += s.close(99)
    for ex in out:
        assert ex.request is not None or ex.response is not None


@SETTINGS
@given(
    st.lists(pairs(), min_size=1, max_size=2),
    st.lists(
        st.tuples(
            st.booleans(),
            st.sampled_from(["replace", "insert", "delete"]),
            st.integers(0, 10**6),
            st.integers(0, 255),
        ),
        max_size=3,
    ),
)
def test_fast_path_and_own_framing_agree_on_mutated_messages(
    ps: list[Pair], mutations: list[tuple[bool, str, int, int]]
) -> None:
    """Whatever llhttp accepts, nodetap's own framing reads the same way (and vice versa)."""
    encoded = [_encode(p) for p in ps]
    streams = [
        bytearray(b"".join(r for r, _ in encoded)),
        bytearray(b"".join(r for _, r in encoded)),
    ]
    for in_resp, op, at, byte in mutations:
        target = streams[in_resp]
        i = at % len(target)
        if op == "replace":
            target[i] = byte
        elif op == "insert":
            target.insert(i, byte)
        elif len(target) > 1:
            del target[i]
    req, resp = bytes(streams[0]), bytes(streams[1])
    fast_st, fast = run_stitcher(req, resp)
    own_st, own = run_stitcher(req, resp, fast=False)
    assert [summary(e) for e in fast] == [summary(e) for e in own]
    assert fast_st.stats.parse_errors == own_st.stats.parse_errors


@SETTINGS
@given(
    st.lists(pairs(), min_size=1, max_size=6),
    st.sets(st.integers(0, 11), max_size=3),
    st.booleans(),
)
def test_lost_messages_never_leave_a_wrong_pair_unflagged(
    ps: list[Pair], lost: set[int], resync: bool
) -> None:
    """Sequential traffic, one chunk per message; some chunks lost (gaps). Whatever comes out
    without a flag is exactly one of the exchanges sent, and both paths agree."""
    ps = [dataclasses.replace(p, url=f"{p.url}#{i}") for i, p in enumerate(ps)]  # distinct
    encoded = [_encode(p) for p in ps]
    outs = []
    for fast in (True, False):
        s = Http1Stitcher(resync=resync, fast=fast)
        out = []
        for i, (req, resp) in enumerate(encoded):
            for j, (data, is_req) in enumerate(((req, True), (resp, False))):
                ts = 10 * i + 5 * j
                if 2 * i + j in lost:
                    out += s.request_gap(len(data), ts) if is_req else s.response_gap(len(data), ts)
                elif is_req:
                    out += s.feed_request_bytes(data, ts)
                else:
                    out += s.feed_response_bytes(data, ts)
        out += s.close(10**6)
        outs.append([summary(e) for e in out])
        sent = {p.url: (p.status, p.resp_body) for p in ps}
        for e in out:
            if not e.flags:
                assert e.request is not None and e.response is not None
                assert sent[e.request.url] == (e.response.status_code, e.response.body)
    assert outs[0] == outs[1]
