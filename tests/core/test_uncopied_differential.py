"""Issue 19 item 1 (parity on what the capture emits since issue 18): sendfile bodies read
back from the file, bytes past the copy bound (GAP records with NT_GAP_BOUND: truncated,
not gap), and answers lost in a gap at the end of a connection (gap, not incomplete). The
Rust core and the Python path make the same RRPairs of the same records, byte for byte,
for both roles; and the RRPairs are the right ones."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent import bpf_layout as L
from tests.core.paths import MONO_TO_WALL, Conn, assert_same

ROLES = pytest.mark.parametrize(
    "role", [L.NT_ROLE_SERVER, L.NT_ROLE_CLIENT], ids=["server", "client"]
)
GET = b"GET /f HTTP/1.1\r\nHost: x\r\n\r\n"
GET2 = b"GET /g HTTP/1.1\r\nHost: x\r\n\r\n"
OK3 = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nbee"


@pytest.fixture
def body_file(tmp_path: Path) -> Iterator[tuple[bytes, bytes]]:
    data = os.urandom(50_000)
    p = tmp_path / "static.bin"
    p.write_bytes(data)
    yield os.fsencode(p.resolve()), data


def _t0() -> int:
    """Monotonic timestamps whose wall time is after the file's ctime (a file changed after
    the send is not read back)."""
    return time.time_ns() - MONO_TO_WALL + 1_000_000_000


def _conn(cid: int, role: int) -> Conn:
    return Conn(cid, role=role, tgid=os.getpid())


def _head(n: int) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n


@ROLES
def test_sendfile_body_read_back(role: int, body_file: tuple[bytes, bytes]) -> None:
    path, data = body_file
    c = _conn(1, role)
    res, t = 1 - c.req_dir, _t0()
    recs = [c.open(t), c.data(c.req_dir, GET, t + 1000)]
    recs += [c.data(res, _head(len(data)), t + 2000), c.sendfile(res, len(data), t + 3000, path)]
    recs += [c.data(c.req_dir, GET2, t + 4000), c.data(res, OK3, t + 5000), c.close(t + 6000)]
    pairs = assert_same([b"".join(recs)])
    assert [p.http.req.url for p in pairs] == ["/f", "/g"]
    assert pairs[0].http.res.body == data and not pairs[0].flags
    assert pairs[1].http.res.body == b"bee"


@ROLES
def test_sendfile_unreadable_is_a_gap(role: int) -> None:
    c = _conn(2, role)
    res, t = 1 - c.req_dir, _t0()
    recs = [c.open(t), c.data(c.req_dir, GET, t + 1000), c.data(res, _head(4000), t + 2000)]
    recs += [c.sendfile(res, 4000, t + 3000, b"/nonexistent/nodetap-test-file")]
    recs += [c.data(c.req_dir, GET2, t + 4000), c.data(res, OK3, t + 5000), c.close(t + 6000)]
    pairs = assert_same([b"".join(recs)])
    assert [p.http.req.url for p in pairs] == ["/f", "/g"]
    assert "gap" in pairs[0].flags and pairs[0].http.res.body_size == 4000
    assert not pairs[1].flags


@ROLES
def test_sendfile_past_max_body_truncates(role: int, body_file: tuple[bytes, bytes]) -> None:
    """max_body 100 B: the copy bound (max_body + 64 KiB head room) is above the file,
    so the file is read whole and the body cut by the parser."""
    path, data = body_file
    c = _conn(3, role)
    res, t = 1 - c.req_dir, _t0()
    recs = [c.open(t), c.data(c.req_dir, GET, t + 1000), c.data(res, _head(len(data)), t + 2000)]
    recs += [c.sendfile(res, len(data), t + 3000, path), c.close(t + 4000)]
    pairs = assert_same([b"".join(recs)], max_body=100)
    assert pairs[0].flags == ["truncated"] and pairs[0].http.res.body == data[:100]


@ROLES
def test_bytes_past_the_copy_bound_truncate(role: int) -> None:
    """A 3 MiB body of which the programs copied 1 MiB, the rest an NT_GAP_BOUND gap:
    truncated, and the next exchange whole."""
    c = _conn(4, role)
    res, t = 1 - c.req_dir, _t0()
    big, copied = 3 << 20, 1 << 20
    recs = [c.open(t), c.data(c.req_dir, GET, t + 1000), c.data(res, _head(big), t + 2000)]
    for _ in range(0, copied, 16384):
        recs.append(c.data(res, b"x" * 16384, t + 3000))
    recs.append(c.gap(res, big - copied, t + 3500, bound=True))
    recs += [c.data(c.req_dir, GET2, t + 4000), c.data(res, OK3, t + 5000), c.close(t + 6000)]
    pairs = assert_same([b"".join(recs)], max_body=1 << 20)
    assert pairs[0].flags == ["truncated"] and pairs[0].http.res.body_size == big
    assert pairs[1].http.res.body == b"bee" and not pairs[1].flags


@ROLES
def test_bound_gap_outside_a_body_is_a_gap(role: int) -> None:
    c = _conn(5, role)
    res, t = 1 - c.req_dir, _t0()
    recs = [c.open(t), c.data(c.req_dir, GET, t + 1000), c.gap(res, 500, t + 2000, bound=True)]
    recs += [c.data(c.req_dir, GET2, t + 3000), c.data(res, OK3, t + 4000), c.close(t + 5000)]
    pairs = assert_same([b"".join(recs)])
    assert any("gap" in p.flags for p in pairs)


@ROLES
def test_answer_lost_at_the_end_is_gap_not_incomplete(role: int) -> None:
    """The response direction lost bytes after the last response began: the requests
    left unanswered at close are flagged gap (agent/gap_marks.py)."""
    c = _conn(6, role)
    res, t = 1 - c.req_dir, _t0()
    recs = [c.open(t), c.data(c.req_dir, GET + GET2, t + 1000), c.data(res, OK3, t + 2000)]
    recs += [c.gap(res, 700, t + 3000), c.close(t + 4000)]
    pairs = assert_same([b"".join(recs)])
    assert [p.http.req.url for p in pairs] == ["/f", "/g"]
    assert "gap" in pairs[1].flags and "incomplete" not in pairs[1].flags
