"""Issue 18 (holes, resync, large heads, refused h2c upgrades): the Rust core and the
Python path make the same RRPairs of the same records, and the RRPairs are the right ones."""

from __future__ import annotations

from agent import bpf_layout as L
from tests.core.paths import Conn, assert_same

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
