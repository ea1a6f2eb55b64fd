"""The Rust core and the Python path make the same RRPairs of the same records, byte for
byte: HTTP/1.x framing cases, gaps, reordering, and every split of the bytes."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent import bpf_layout as L
from tests.core.paths import Conn, assert_same, conversation

GET = b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nUser-Agent: t  \r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: s\r\n\r\nhello"
POST = b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world"
CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n"
    b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: done\r\nX-U: \xe9\r\n\r\n"
)

CASES: dict[str, list[tuple[str, bytes | int]]] = {
    "keep-alive": [("req", GET), ("res", OK), ("req", GET), ("res", OK)],
    "post": [("req", POST), ("res", b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n")],
    "chunked-trailers": [("req", GET), ("res", CHUNKED)],
    "chunked-request": [
        ("req", b"PUT /c HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
        ("res", b"HTTP/1.1 204 No Content\r\n\r\n"),
    ],
    "head": [
        ("req", b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n"),
        ("res", b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"),
        ("req", GET),
        ("res", OK),
    ],
    "304-and-204": [
        ("req", GET),
        ("res", b"HTTP/1.1 304 Not Modified\r\nContent-Length: 99\r\n\r\n"),
        ("req", GET),
        ("res", b"HTTP/1.1 204 No Content\r\n\r\n"),
    ],
    "100-continue": [
        ("req", b"POST /u HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n"),
        ("res", b"HTTP/1.1 100 Continue\r\n\r\n"),
        ("req", b"abc"),
        ("res", OK),
    ],
    "pipelining": [("req", GET + POST + GET), ("res", OK + OK), ("res", OK)],
    "close-delimited": [
        ("req", b"GET /old HTTP/1.0\r\n\r\n"),
        ("res", b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nsome "),
        ("res", b"bytes until close"),
    ],
    "upgrade": [
        ("req", b"GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"),
        ("res", b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello"),
        ("req", b"\x81\x85abcdefghi"),
    ],
    "upgrade-refused": [
        ("req", b"GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n" + GET),
        ("res", OK + OK),
    ],
    "connect": [
        ("req", b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"),
        ("res", b"HTTP/1.1 200 Connection established\r\n\r\n"),
        ("req", b"\x16\x03\x01 tls bytes"),
    ],
    "incomplete-response": [
        ("req", GET),
        ("res", b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\nab"),
    ],
    "no-response": [("req", GET), ("req", POST)],
    "gap-in-body": [
        ("req", GET),
        ("res", b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\nabcde"),
        ("res", 5),
        ("res", b"0123456789"),
        ("req", GET),
        ("res", OK),
    ],
    "gap-in-chunk": [
        ("req", GET),
        ("res", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\nab"),
        ("res", 3),
        ("res", b"cdefg\r\n0\r\n\r\n"),
    ],
    "latin1-and-reason": [
        ("req", b"GET /\xe9t\xe9 HTTP/1.1\r\nX-A:\tv\xff \r\nX-Empty:\r\n\r\n"),
        ("res", b"HTTP/1.1 418\r\nContent-Length: 2\r\n\r\n\x00\x01"),
    ],
    "bad-header-then-resync": [
        ("req", b"GET /1 HTTP/1.1\r\nBad Header\r\n\r\n"),
        ("res", b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"),
        ("req", GET),
        ("res", OK),
    ],
    "bad-chunk-then-resync": [
        ("req", GET),
        ("res", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n"),
        ("req", GET),
        ("res", OK),
    ],
    "cl-and-te": [
        ("req", b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"),
        ("res", OK),
    ],
    "data-after-close": [
        ("req", b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n" + GET),
        ("res", OK),
    ],
    "not-http": [
        ("req", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
        ("res", b"\x16\x03\x03"),
    ],
    "gap-in-request-head": [
        ("req", b"GET /x HTTP/1.1\r\nHo"),
        ("req", 7),
        ("req", b"\r\n\r\n" + GET),
        ("res", OK + OK),
    ],
    "gap-at-response-start": [("req", GET + GET), ("res", 40), ("res", OK)],
    "answer-without-request": [
        ("res", b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"),
        ("req", GET),
    ],
}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("role", [L.NT_ROLE_SERVER, L.NT_ROLE_CLIENT], ids=["server", "client"])
def test_same_rrpairs(name: str, role: int) -> None:
    recs = conversation(Conn(1, role=role), CASES[name])
    pairs = assert_same([b"".join(recs)])
    assert pairs or name == "not-http", "the case makes at least one RRPair"


def test_truncated_bodies() -> None:
    recs = conversation(Conn(3), CASES["chunked-trailers"] + CASES["post"])
    pairs = assert_same([b"".join(recs)], max_body=7)
    assert any("truncated" in p.flags for p in pairs)


def test_many_connections_interleaved_and_batched() -> None:
    convs = [conversation(Conn(10 + i, fd=i), CASES[n]) for i, n in enumerate(sorted(CASES))]
    # interleave records of all connections; cut into batches of 3 records
    recs = [r for group in zip(*[c + [b""] * 20 for c in convs], strict=False) for r in group if r]
    assert_same([b"".join(recs[i : i + 3]) for i in range(0, len(recs), 3)])


def test_reordered_records_and_late_holes() -> None:
    c = Conn(5)
    recs = [c.open(1000)]
    first = c.data(c.req_dir, GET[:10], 2000)
    second = c.data(c.req_dir, GET[10:], 3000)
    recs += [second, first]  # the second piece arrives first
    r1 = c.data(1 - c.req_dir, OK[:20], 4000)
    c.off[1 - c.req_dir] += 3  # three response bytes never arrive: a hole
    r2 = c.data(1 - c.req_dir, OK[23:], 5000)
    recs += [r1, r2]
    # the hole outlives two batches and becomes a gap; then the close
    assert_same([b"".join(recs), b"", b"", c.close(6000)])


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(sorted(CASES)),
    cuts=st.lists(st.integers(min_value=1, max_value=400), max_size=8),
)
def test_split_anywhere_same_rrpairs(name: str, cuts: list[int]) -> None:
    """Split each piece at arbitrary places: the core equals the Python path, and equals
    itself unsplit (split invariance)."""
    pieces: list[tuple[str, bytes | int]] = []
    for side, p in CASES[name]:
        if isinstance(p, int):
            pieces.append((side, p))
            continue
        at = sorted({c % (len(p) + 1) for c in cuts} | {0, len(p)})
        pieces += [(side, p[a:b]) for a, b in itertools.pairwise(at) if b > a]
    assert_same([b"".join(conversation(Conn(7), pieces))])
