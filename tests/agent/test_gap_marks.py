"""Exchanges cut short by bytes the capture lost are flagged `gap` (agent/gap_marks.py);
those the peer really left unanswered stay `incomplete` only. Records are fed to the
capture's record loop as the ring buffer would deliver them, with some lost on the way."""

from __future__ import annotations

from tests.core.paths import Conn, python_path

REQ = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
RES = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def test_a_request_whose_answer_was_lost_is_flagged_gap() -> None:
    c = Conn(1)
    records = [c.open(1000), c.data(c.req_dir, REQ, 2000)]
    c.data(1 - c.req_dir, RES, 3000)  # lost: the ring buffer was full
    records.append(c.close(4000))  # its offsets show the lost bytes
    (pair,) = python_path([b"".join(records)])
    assert pair.http.req.url == "/a"
    assert "gap" in pair.flags and "incomplete" not in pair.flags  # lost, not cut short


def test_a_request_left_unanswered_is_only_incomplete() -> None:
    c = Conn(1)
    records = [c.open(1000), c.data(c.req_dir, REQ, 2000), c.close(4000)]
    (pair,) = python_path([b"".join(records)])
    assert list(pair.flags) == ["incomplete"]


def test_a_whole_answer_after_the_loss_closes_it() -> None:
    c = Conn(1)
    records = [c.open(1000), c.data(c.req_dir, REQ, 2000)]
    c.data(1 - c.req_dir, RES, 3000)  # lost
    records.append(c.data(c.req_dir, REQ.replace(b"/a", b"/b"), 4000))
    records.append(c.data(1 - c.req_dir, RES, 5000))
    records.append(c.data(c.req_dir, REQ.replace(b"/a", b"/c"), 6000))
    records.append(c.close(7000))  # /c: the peer never answered, nothing was lost after /b
    # one record per drain: the hole before /b's answer is declared before the close
    got = python_path(records)
    pairs = {p.http.req.url: set(p.flags) for p in got}
    assert "gap" in pairs["/a"]
    assert [p.http.res.status_code for p in got if p.http.req.url == "/b"] == [200]
    assert pairs["/c"] == {"incomplete"}
