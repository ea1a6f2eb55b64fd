"""The packet pipeline on hand-made frames (no I/O): how connection ends meet HTTP."""

from __future__ import annotations

import struct

from agent.packet.decode import LinkType
from agent.packet.http_session import emitting
from agent.packet.pipeline import PacketPipeline
from nodetap.v1 import rrpair_pb2 as pb

C, S = b"\x0a\0\0\x01", b"\x0a\0\0\x02"
SYN, FIN, RST, PSH, ACK = 0x02, 0x01, 0x04, 0x08, 0x10


class Conn:
    """Frames of one TCP connection, with sequence numbers kept."""

    def __init__(self, cport: int = 40000, sport: int = 80) -> None:
        self.cport, self.sport = cport, sport
        self.cseq, self.sseq = 1000, 0xFFFFFF00  # the server's numbers wrap mid-stream
        self.ts = 0
        self.frames: list[tuple[int, bytes]] = []

    def send(self, from_client: bool, flags: int, payload: bytes = b"") -> None:
        src, dst = (C, S) if from_client else (S, C)
        sp, dp = (self.cport, self.sport) if from_client else (self.sport, self.cport)
        seq, ack = (self.cseq, self.sseq) if from_client else (self.sseq, self.cseq)
        ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 0, 0x4000, 64, 6, 0, src, dst)
        tcp = struct.pack(">HHIIHHHH", sp, dp, seq, ack, (5 << 12) | flags, 65535, 0, 0)
        self.ts += 1000
        self.frames.append((self.ts, b"\0" * 12 + b"\x08\x00" + ip + tcp + payload))
        n = len(payload) + (1 if flags & (SYN | FIN) else 0)
        if from_client:
            self.cseq = (self.cseq + n) & 0xFFFFFFFF
        else:
            self.sseq = (self.sseq + n) & 0xFFFFFFFF

    def handshake(self) -> None:
        self.send(True, SYN)
        self.send(False, SYN | ACK)
        self.send(True, ACK)


def run(frames: list[tuple[int, bytes]]) -> tuple[list[pb.RRPair], dict[str, int]]:
    pairs: list[pb.RRPair] = []
    pipe = PacketPipeline(emitting(pairs.append), source="pcap")
    for ts, f in frames:
        pipe.frame(ts, LinkType.ETHERNET, f)
    pipe.finish()
    return pairs, pipe.summary()


def test_body_delimited_by_the_servers_fin() -> None:
    c = Conn()
    c.handshake()
    c.send(True, PSH | ACK, b"GET /old HTTP/1.0\r\n\r\n")
    c.send(False, PSH | ACK, b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nfirst part, ")
    c.send(False, PSH | ACK, b"and the rest")
    c.send(False, FIN | ACK)
    c.send(True, FIN | ACK)
    c.send(False, ACK)
    pairs, summary = run(c.frames)
    (p,) = pairs
    assert p.http.res.body == b"first part, and the rest"
    assert not p.flags and summary["open_flows"] == 0 and summary["flows"] == 1


def test_pipelined_requests_on_one_connection() -> None:
    c = Conn()
    c.handshake()
    c.send(True, PSH | ACK, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
    c.send(False, PSH | ACK, b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nA")
    c.send(False, PSH | ACK, b"HTTP/1.1 404 Not Found\r\nContent-Length: 1\r\n\r\nB")
    pairs, _ = run(c.frames)
    assert [(p.http.req.url, p.http.res.status_code, p.http.res.body) for p in pairs] == [
        ("/a", 200, b"A"),
        ("/b", 404, b"B"),
    ]


def test_reset_in_the_middle_of_a_response() -> None:
    c = Conn()
    c.handshake()
    c.send(True, PSH | ACK, b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    c.send(False, PSH | ACK, b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 40)
    c.send(True, RST | ACK)
    pairs, summary = run(c.frames)
    (p,) = pairs
    assert "incomplete" in p.flags and p.http.res.body == b"x" * 40
    assert summary["open_flows"] == 0


def test_request_bytes_missing_then_resync() -> None:
    """The second request's segment never reached the capture, but the server's ACK
    covers it: a gap in the request stream (reported before the response that follows),
    the lone response is flagged, the third exchange pairs correctly again."""
    c = Conn()
    c.handshake()
    for i, status in ((1, 200), (2, 201), (3, 202)):
        c.send(True, PSH | ACK, f"GET /{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        c.send(False, PSH | ACK, f"HTTP/1.1 {status} OK\r\nContent-Length: 0\r\n\r\n".encode())
    del c.frames[5]  # the second request
    pairs, summary = run(c.frames)
    assert summary["gaps"] == 1
    by_status = {p.http.res.status_code: p for p in pairs}
    assert by_status[200].http.req.url == "/1" and not by_status[200].flags
    assert not by_status[201].http.HasField("req") and by_status[201].flags
    assert by_status[202].http.req.url == "/3"
    # (which exchange carries "gap" is the stitcher's call: today the request after it)
    assert any("gap" in p.flags for p in pairs)
