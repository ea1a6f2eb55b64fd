"""Issue 18 (holes, resync, large heads, refused h2c upgrades): the Rust core and the
Python path make the same RRPairs of the same records, and the RRPairs are the right ones."""

from __future__ import annotations

import pytest

from agent import bpf_layout as L
from nodetap.v1 import rrpair_pb2 as pb
from tests.core.paths import Conn, assert_same, conversation, core_path, python_path

GET_A = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
GET_B = b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n"
BIG = 2 << 20
COPIED = 1_179_648  # what the programs copy of one syscall today


def _res_dir(c: Conn) -> int:
    return 1 - c.req_dir


def hole_then_close(role: int) -> tuple[Conn, list[bytes]]:
    """/a answered with 2 MiB in one write, copied in part (a hole of the rest, no GAP
    record), then /b and its answer, then the close: all in one drain."""
    c = Conn(1, role=role)
    res = _res_dir(c)
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % BIG
    recs = [c.open(1000), c.data(c.req_dir, GET_A, 2000)]
    first = head + b"A" * (COPIED - len(head))
    for i in range(0, len(first), 16384):
        recs.append(c.data(res, first[i : i + 16384], 3000))
    c.off[res] += len(head) + BIG - len(first)  # the rest of the write: never copied
    recs.append(c.data(c.req_dir, GET_B, 4000))
    recs.append(c.data(res, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nbee", 5000))
    recs.append(c.close(6000))
    return c, recs


def test_a_hole_does_not_swallow_the_next_exchange() -> None:
    for role in (L.NT_ROLE_SERVER, L.NT_ROLE_CLIENT):
        _, recs = hole_then_close(role)
        pairs = assert_same([b"".join(recs)])
        assert [p.http.req.url for p in pairs] == ["/a", "/b"]
        assert "gap" in pairs[0].flags and "incomplete" not in pairs[0].flags
        assert pairs[0].http.res.body_size == BIG
        assert pairs[1].http.res.body == b"bee" and not pairs[1].flags


def test_a_request_hole_does_not_swallow_the_next_request() -> None:
    c = Conn(2)
    n = 1536 << 10
    post = b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % n
    recs = [c.open(1000), c.data(c.req_dir, post + b"B" * 1000, 2000)]
    c.off[c.req_dir] += n - 1000
    recs.append(c.data(_res_dir(c), b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 3000))
    recs.append(c.data(c.req_dir, b"GET /after HTTP/1.1\r\n\r\n", 4000))
    recs.append(c.data(_res_dir(c), b"HTTP/1.1 204 No Content\r\n\r\n", 5000))
    recs.append(c.close(6000))
    pairs = assert_same([b"".join(recs)])
    assert [p.http.req.url for p in pairs] == ["/up", "/after"]
    assert pairs[0].flags == ["gap"] and pairs[0].http.req.body_size == n
    assert pairs[1].http.res.status_code == 204 and not pairs[1].flags


def test_a_gap_record_behind_a_hole_waits_in_its_place() -> None:
    c = Conn(3)
    res = _res_dir(c)
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n"
    recs = [c.open(1000), c.data(c.req_dir, GET_A + GET_B, 2000)]
    recs.append(c.data(res, head + b"0123456789", 3000))
    c.off[res] += 5  # lost
    recs.append(c.gap(res, 10, 3500))  # sendfile: moved, not copied
    recs.append(c.data(res, b"abcde" + b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz", 4000))
    pairs = assert_same([b"".join(recs), b"", b"", c.close(6000)])
    assert [p.http.req.url for p in pairs] == ["/a", "/b"]
    assert pairs[0].flags == ["gap"] and pairs[0].http.res.body_size == 30
    assert pairs[1].http.res.body == b"z" and not pairs[1].flags


def _filler(n: int) -> bytes:
    return b"".join(b"X-Filler-%d: %s\r\n" % (i, b"v" * 1000) for i in range(n // 1000))


def _pieces(side: str, data: bytes, size: int = 16384) -> list[tuple[str, bytes | int]]:
    return [(side, data[i : i + size]) for i in range(0, len(data), size)]


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
CHUNKED_HEAD = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
H2C = b"Connection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAEAAEAA\r\nUpgrade: h2c\r\n"
CASES: dict[str, list[tuple[str, bytes | int]]] = {
    "head-request-cut-by-a-gap": [
        ("req", GET_A),
        ("res", OK),
        ("req", b"HEAD / HTTP/1.1\r\n"),
        ("req", 11),
        ("res", b"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"),
        ("req", GET_B),
        ("res", OK),
    ],
    "headers-100-kib-in-pieces": [
        *_pieces("req", b"GET /big HTTP/1.1\r\nHost: x\r\n" + _filler(100 << 10) + b"\r\n"),
        ("res", OK),
        ("req", GET_B),
        ("res", OK),
    ],
    "headers-past-the-bound": [
        *_pieces("req", b"GET /big HTTP/1.1\r\nHost: x\r\n" + _filler(1100 << 10) + b"\r\n"),
        ("res", b"HTTP/1.1 431 Too Large\r\nContent-Length: 0\r\n\r\n"),
        ("req", GET_B),
        ("res", OK),
    ],
    "response-headers-past-the-bound": [
        ("req", GET_A),
        *_pieces("res", b"HTTP/1.1 200 OK\r\n" + _filler(1100 << 10) + b"\r\n"),
        ("req", GET_B),
        ("res", OK),
    ],
    "h2c-refused-then-1-mib-post": [
        ("req", b"GET /first HTTP/1.1\r\nContent-Length: 0\r\nHost: x\r\n" + H2C + b"\r\n"),
        ("res", OK),
        *_pieces(
            "req",
            b"POST /upload HTTP/1.1\r\nContent-Length: %d\r\nHost: x\r\n" % (1 << 20)
            + H2C
            + b"\r\n"
            + b"p" * (1 << 20),
        ),
        ("res", OK),
        ("req", b"GET /after HTTP/1.1\r\nContent-Length: 0\r\nHost: x\r\n" + H2C + b"\r\n"),
        ("res", OK),
    ],
    "h2c-refused-before-the-request-ended": [
        ("req", b"POST /early HTTP/1.1\r\nContent-Length: 100\r\n" + H2C + b"\r\n" + b"p" * 60),
        ("res", OK),
        ("req", b"p" * 40),
        ("req", b"GET /after HTTP/1.1\r\nContent-Length: 0\r\n" + H2C + b"\r\n"),
        ("res", OK),
    ],
    # RFC 9110 7.8: a client finishes sending its request before it uses the new protocol,
    # so the request is read to the end of its framing, then the connection switches
    "h2c-101-before-the-request-ended": [
        ("req", b"POST /early HTTP/1.1\r\nContent-Length: 100\r\n" + H2C + b"\r\n" + b"p" * 60),
        ("res", b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"),
        ("res", b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"),
        ("req", b"p" * 40 + b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"),
        ("req", b"GET /not-http1 HTTP/1.1\r\n\r\n"),
    ],
    "answer-lost-at-the-end": [("req", GET_A + GET_B), ("res", OK), ("res", 40)],
    "gap-loses-the-chunk-framing": [
        ("req", GET_A + GET_B),
        ("res", CHUNKED_HEAD + b"10\r\nabc"),
        ("res", 50),
        ("res", b"tail\r\n5\r\nabcde\r\n0\r"),
        ("res", b"\n\r\n" + OK),
    ],
    "gap-loses-the-chunk-framing-trailers": [
        ("req", GET_A + GET_B),
        ("res", CHUNKED_HEAD + b"10\r\nabc"),
        ("res", 50),
        ("res", b"tail\r\n0\r\nX-T: 1\r\n\r\n" + OK),
    ],
}


# After a 101 to h2c the Python path stops parsing; the core decodes the HTTP/2 that follows
H2_AFTER_UPGRADE = {"h2c-101-before-the-request-ended"}


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("role", [L.NT_ROLE_SERVER, L.NT_ROLE_CLIENT], ids=["server", "client"])
def test_same_rrpairs(name: str, role: int) -> None:
    batch = [b"".join(conversation(Conn(9, role=role), CASES[name]))]
    if name in H2_AFTER_UPGRADE:
        pairs = python_path(batch, 1 << 20)
        got = [pb.RRPair.FromString(b) for b in core_path(batch)[0]]
        assert [p for p in got if p.l7protocol != "http2"] == pairs
        # the core goes on in HTTP/2 (src/h2): the upgrade request is stream 1
        assert [p.http.req.url for p in got if p.l7protocol == "http2"][:1] == ["/early"]
    else:
        pairs = assert_same(batch)
    flags = [sorted(p.flags) for p in pairs]
    urls = [p.http.req.url for p in pairs]
    if name == "head-request-cut-by-a-gap":
        assert urls == ["/a", "/", "/b"] and flags == [[], ["gap"], []]
        assert pairs[1].http.res.body_size == 0  # the answer to a HEAD has no body
    elif name == "headers-100-kib-in-pieces":
        assert urls == ["/big", "/b"] and flags == [[], []]
        assert len(pairs[0].http.req.headers) == 1 + 102
    elif name == "headers-past-the-bound":
        assert urls == ["/big", "/b"] and flags == [["truncated"], []]
        assert pairs[0].http.res.status_code == 431
    elif name == "response-headers-past-the-bound":
        assert urls == ["/a", "/b"] and flags == [["truncated"], []]
    elif name == "h2c-refused-then-1-mib-post":
        assert urls == ["/first", "/upload", "/after"] and flags == [[], [], []]
        assert pairs[1].http.req.body == b"p" * (1 << 20)
    elif name == "h2c-refused-before-the-request-ended":
        assert urls == ["/early", "/after"] and flags == [[], []]
        assert pairs[0].http.req.body == b"p" * 100 and pairs[1].http.res.body == b"ok"
    elif name == "h2c-101-before-the-request-ended":
        assert urls == ["/early"] and flags == [["upgrade"]]
        assert pairs[0].http.req.body == b"p" * 100 and pairs[0].http.res.status_code == 101
    elif name == "answer-lost-at-the-end":
        assert urls == ["/a", "/b"] and flags == [[], ["gap"]]
    elif name.startswith("gap-loses-the-chunk-framing"):
        # the message that lost bytes: "gap"; the next one whole
        assert urls == ["/a", "/b"] and flags == [["gap"], []]
        assert pairs[0].http.res.body == b"abc" and pairs[1].http.res.body == b"ok"
        # the body's size is bounded: its data (16 + 5 bytes; 50 lost) at least, at most
        # that plus the framing in the stretch lost or skipped
        assert 16 + 5 <= pairs[0].http.res.body_size <= 3 + 50 + len("tail\r\n5\r\nabcde")
        if name.endswith("-trailers"):  # the end of the message found whole
            assert [(t.name, t.value) for t in pairs[0].http.res.trailers] == [("X-T", "1")]
