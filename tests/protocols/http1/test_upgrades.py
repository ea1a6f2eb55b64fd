"""Protocol switches: WebSocket and h2c upgrades taken or refused, CONNECT tunnels, and the
bytes held after an upgrade request until its answer decides.
"""

from __future__ import annotations

import pytest

from agent.protocols.http1 import Http1Stitcher, RequestParser
from tests.protocols.http1.helpers import GET, OK, run_stitcher


def test_websocket_upgrade_stops_parsing() -> None:
    req = (
        b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Upgrade\r\n"
        b"Upgrade: websocket\r\n\r\n\x81\x05hello"
    )
    resp = (
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        b"\x81\x02hi"
    )
    st, out = run_stitcher(req, resp)
    assert len(out) == 1
    assert out[0].flags == {"upgrade"}
    assert out[0].response is not None and out[0].response.status_code == 101
    assert st.upgraded and not st.failed
    assert st.feed_request_bytes(b"GET / HTTP/1.1\r\n\r\n", 5) == []
    assert st.stats.parse_errors == 0


def test_upgrade_refused_continues_as_http() -> None:
    req = (
        b"GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\nGET /next HTTP/1.1\r\n\r\n"
    )
    resp = (
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"
        + b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb"
    )
    st = Http1Stitcher()
    out = st.feed_request_bytes(req, 1)
    out += st.feed_response_bytes(resp, 2)
    assert [(e.request.url, e.response.body) for e in out if e.request and e.response] == [
        ("/ws", b"a"),
        ("/next", b"b"),
    ]
    assert not st.upgraded


def test_connect_2xx_is_upgrade_and_407_is_not() -> None:
    req = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
    st, out = run_stitcher(
        req + b"\x16\x03\x01garbage", b"HTTP/1.1 200 Connection established\r\n\r\n\x16\x03\x03"
    )
    assert len(out) == 1 and out[0].flags == {"upgrade"} and st.upgraded
    assert out[0].request is not None and out[0].request.url == "example.com:443"
    st, out = run_stitcher(
        req + GET,
        b"HTTP/1.1 407 Proxy Auth\r\nContent-Length: 2\r\n\r\nno" + OK,
    )
    assert [e.response.status_code for e in out if e.response] == [407, 200]
    assert not st.upgraded and st.stats.parse_errors == 0


def test_request_parser_alone_holds_after_upgrade() -> None:
    p = RequestParser()
    msgs = p.feed(b"GET / HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n" + GET, 1)
    assert len(msgs) == 1 and p.upgrade_pending
    assert [m.url for m in p.resume()] == ["/a?x=1"]


def test_gap_while_upgrade_pending_then_refused() -> None:
    st = Http1Stitcher()
    st.feed_request_bytes(b"GET /ws HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: ws\r\n\r\n", 1)
    st.request_gap(10, 2)
    st.feed_request_bytes(GET, 3)
    out = st.feed_response_bytes(b"HTTP/1.1 400 No\r\nContent-Length: 0\r\n\r\n" + OK, 4)
    assert [(e.request.url if e.request else None, e.flags) for e in out] == [
        ("/ws", set()),
        ("/a?x=1", {"gap"}),
    ]


def test_bytes_held_after_an_upgrade_request_are_bounded() -> None:
    from agent.protocols.http1.parse import HELD_MAX

    st = Http1Stitcher()
    st.feed_request_bytes(b"GET /ws HTTP/1.1\r\nConnection: upgrade\r\nUpgrade: ws\r\n\r\n", 1)
    blob = b"x" * (64 * 1024)
    for i in range(HELD_MAX // len(blob) + 4):
        st.feed_request_bytes(blob, 2 + i)
    held = st._req._held_bytes
    assert held <= HELD_MAX
    out = st.feed_response_bytes(b"HTTP/1.1 101 Switching\r\nUpgrade: ws\r\n\r\n", 99)
    assert len(out) == 1 and out[0].flags == {"upgrade"} and st.upgraded


R101 = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
H2C_POST = (
    b"POST /up HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, HTTP2-Settings\r\n"
    b"Upgrade: h2c\r\nHTTP2-Settings: AAA\r\n"
)
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize(
    "framing, body",
    [
        (b"Content-Length: 10\r\n", [b"01234", b"56789"]),
        (b"Transfer-Encoding: chunked\r\n", [b"5\r\n01234\r\n", b"5\r\n56789\r\n0\r\n\r\n"]),
    ],
    ids=["content-length", "chunked"],
)
def test_101_before_the_request_ended(fast: bool, framing: bytes, body: list[bytes]) -> None:
    """The server switches before the request's body ended (RFC 9110 7.8: the client still
    sends all of it before it uses the new protocol): the request is read to the end of its
    framing, whole; the bytes after it belong to the new protocol (never a request)."""
    st = Http1Stitcher(fast=fast)
    out = st.feed_request_bytes(H2C_POST + framing + b"\r\n" + body[0], 1)
    out += st.feed_response_bytes(R101 + b"\x00\x00\x12\x04", 2)
    assert out == []  # the request has not ended yet
    out += st.feed_request_bytes(body[1] + PREFACE + b"GET /x HTTP/1.1\r\n\r\n", 3)
    out += st.close(4)
    assert len(out) == 1 and out[0].flags == {"upgrade"} and st.upgraded
    req = out[0].request
    assert req is not None and req.body == b"0123456789" and req.body_size == 10
    assert st.stats.parse_errors == 0


@pytest.mark.parametrize("fast", [True, False])
def test_101_before_the_request_ended_then_its_rest_lost(fast: bool) -> None:
    """The rest of the body and the first bytes of the new protocol lost in one hole: the
    exchange is `gap` and `upgrade`, and nothing after the hole is taken for HTTP."""
    st = Http1Stitcher(fast=fast)
    out = st.feed_request_bytes(H2C_POST + b"Content-Length: 10\r\n\r\n01234", 1)
    out += st.feed_response_bytes(R101, 2)
    out += st.request_gap(5 + len(PREFACE), 3)
    out += st.feed_request_bytes(b"GET /x HTTP/1.1\r\n\r\n", 4)
    out += st.close(5)
    assert [(e.request.url if e.request else None, e.flags) for e in out] == [
        ("/up", {"gap", "upgrade"})
    ]
    assert out[0].request is not None and out[0].request.body_size == 10
