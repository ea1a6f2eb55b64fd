"""The flow table on its own (no I/O): roles, handshake and mid-stream pickup, FIN/RST,
port reuse, idle eviction, flow and buffer limits."""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.packet.decode import ACK, FIN, RST, SYN, Segment
from agent.packet.flows import FlowInfo, FlowTable, Session

C, S = b"\x0a\0\0\x01", b"\x0a\0\0\x02"
PSH = 0x08


@dataclass
class Recorder:
    info: FlowInfo
    events: list[tuple[str, bool, bytes | int]] = field(default_factory=list)
    closed: bool = False

    def data(self, from_client: bool, data: bytes, ts_ns: int) -> None:
        self.events.append(("data", from_client, data))

    def gap(self, from_client: bool, size: int, ts_ns: int) -> None:
        self.events.append(("gap", from_client, size))

    def close(self, ts_ns: int) -> None:
        self.closed = True

    def stream(self, from_client: bool) -> bytes:
        out = b""
        for _kind, fc, d in self.events:
            if fc == from_client:
                out += d if isinstance(d, bytes) else b"?" * d
        return out


class Sessions:
    def __init__(self) -> None:
        self.all: list[Recorder] = []

    def __call__(self, info: FlowInfo) -> Session:
        r = Recorder(info)
        self.all.append(r)
        return r


def seg(src: bytes, sport: int, dst: bytes, dport: int, seq: int, ack: int, flags: int,
        payload: bytes = b"") -> Segment:  # fmt: skip
    return Segment(src, dst, sport, dport, seq, ack, flags, payload)


def handshake(t: FlowTable, cport: int = 40000, isn_c: int = 1000, isn_s: int = 5000) -> None:
    t.segment(seg(C, cport, S, 80, isn_c, 0, SYN), 1)
    t.segment(seg(S, 80, C, cport, isn_s, isn_c + 1, SYN | ACK), 2)
    t.segment(seg(C, cport, S, 80, isn_c + 1, isn_s + 1, ACK), 3)


def test_handshake_data_and_fin_close_the_flow() -> None:
    sessions = Sessions()
    t = FlowTable(sessions)
    handshake(t)
    t.segment(seg(C, 40000, S, 80, 1001, 5001, ACK | PSH, b"GET / HTTP/1.1\r\n\r\n"), 4)
    t.segment(seg(S, 80, C, 40000, 5001, 1019, ACK | PSH, b"HTTP/1.1 200 OK\r\n\r\n"), 5)
    t.segment(seg(C, 40000, S, 80, 1019, 5020, ACK | FIN), 6)
    assert t.open_flows == 1
    t.segment(seg(S, 80, C, 40000, 5020, 1020, ACK | FIN), 7)
    assert t.open_flows == 0 and t.stats.closed == 1
    (r,) = sessions.all
    assert r.closed and not r.info.midstream
    assert (r.info.client_ip, r.info.client_port, r.info.server_port) == ("10.0.0.1", 40000, 80)
    assert r.stream(True) == b"GET / HTTP/1.1\r\n\r\n"
    assert r.stream(False) == b"HTTP/1.1 200 OK\r\n\r\n"


def test_a_late_copy_after_the_close_starts_no_connection() -> None:
    """A retransmission delayed past both FINs (a slow path, netem's reordering) is a copy
    of bytes already delivered, not a connection picked up mid-stream with a gap; the same
    ports with a new SYN are a new connection."""
    sessions = Sessions()
    t = FlowTable(sessions)
    handshake(t)
    body = b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nbody"
    t.segment(seg(C, 40000, S, 80, 1001, 5001, ACK | PSH, b"GET / HTTP/1.1\r\n\r\n"), 4)
    t.segment(seg(S, 80, C, 40000, 5001, 1019, ACK | PSH, body), 5)
    t.segment(seg(C, 40000, S, 80, 1019, 5001 + len(body), ACK | FIN), 6)
    t.segment(seg(S, 80, C, 40000, 5001 + len(body), 1020, ACK | FIN), 7)
    t.segment(seg(S, 80, C, 40000, 5001, 1019, ACK | PSH, body), 8)  # the late copy
    t.segment(seg(S, 80, C, 40000, 5002 + len(body), 0, RST), 9)
    stats = t.snapshot_stats()
    assert (stats.flows, stats.midstream, stats.gaps) == (1, 0, 0)
    assert stats.late_segments == 2 and stats.duplicate_bytes == len(body)
    handshake(t, isn_c=90000, isn_s=70000)
    assert t.snapshot_stats().flows == 2 and len(sessions.all) == 1  # no data yet
    assert t.open_flows == 1


def test_midstream_roles_from_ports_then_payload_then_port_order() -> None:
    sessions = Sessions()
    t = FlowTable(sessions, ports=[8080])
    # a response seen first, on the selected port: the sender is the server
    t.segment(seg(S, 8080, C, 50000, 7, 9, ACK | PSH, b"tail of a body"), 1)
    # no port selected on this table: the payload decides
    t2 = FlowTable(sessions)
    t2.segment(seg(S, 9000, C, 1234, 7, 9, ACK | PSH, b"HTTP/1.1 200 OK\r\n"), 1)
    t2.segment(seg(C, 60001, S, 60000, 7, 9, ACK | PSH, b"binary"), 1)  # lower port serves
    a, b, c = sessions.all
    assert (a.info.server_port, a.info.client_port, a.info.midstream) == (8080, 50000, True)
    assert (b.info.server_port, b.info.client_port) == (9000, 1234)
    assert (c.info.server_port, c.info.client_port) == (60000, 60001)
    assert a.events == [("data", False, b"tail of a body")]
    assert t.stats.midstream == 1


def test_stray_packets_open_no_flow_and_rst_closes() -> None:
    sessions = Sessions()
    t = FlowTable(sessions)
    t.segment(seg(C, 1, S, 80, 1, 1, ACK), 1)
    t.segment(seg(C, 1, S, 80, 1, 1, ACK | FIN), 1)
    t.segment(seg(C, 1, S, 80, 1, 1, RST), 1)
    assert t.stats.ignored == 3 and t.open_flows == 0
    handshake(t)
    t.segment(seg(C, 40000, S, 80, 1001, 5001, ACK | PSH, b"abc"), 4)
    t.segment(seg(S, 80, C, 40000, 5001, 1004, RST | ACK), 5)
    assert t.open_flows == 0 and sessions.all[0].closed


def test_port_reuse_with_a_new_isn_starts_a_new_connection() -> None:
    sessions = Sessions()
    t = FlowTable(sessions)
    handshake(t, isn_c=1000)
    t.segment(seg(C, 40000, S, 80, 1001, 5001, ACK | PSH, b"one"), 4)
    t.segment(seg(C, 40000, S, 80, 1000, 0, SYN), 5)  # retransmitted SYN: same connection
    assert t.stats.flows == 1
    handshake(t, isn_c=90000, isn_s=70000)
    t.segment(seg(C, 40000, S, 80, 90001, 70001, ACK | PSH, b"two"), 9)
    assert t.stats.flows == 2 and sessions.all[0].closed
    assert sessions.all[1].stream(True) == b"two"


def test_idle_flows_are_evicted_by_capture_time() -> None:
    sessions = Sessions()
    t = FlowTable(sessions, idle_timeout_ns=10 * 10**9)
    handshake(t, cport=1)
    t.segment(seg(C, 1, S, 80, 1001, 5001, ACK | PSH, b"x"), 4)
    handshake(t, cport=2)
    t.segment(seg(C, 2, S, 80, 1001, 5001, ACK | PSH, b"y"), 5 * 10**9)
    assert t.expire(12 * 10**9) == 1  # port 1 idle since t=4ns, port 2 since t=5s
    assert t.open_flows == 1 and sessions.all[0].closed and not sessions.all[1].closed
    assert t.stats.evicted_idle == 1


def test_flow_limit_closes_least_recently_active() -> None:
    sessions = Sessions()
    t = FlowTable(sessions, max_flows=3)
    for port in (1, 2, 3):
        t.segment(seg(C, port, S, 80, 10, 20, ACK | PSH, b"data"), port)
    t.segment(seg(C, 1, S, 80, 14, 20, ACK | PSH, b"more"), 4)  # port 1 active again
    t.segment(seg(C, 4, S, 80, 10, 20, ACK | PSH, b"data"), 5)
    assert t.open_flows == 3 and t.stats.evicted_limit == 1
    assert [r.closed for r in sessions.all] == [False, True, False, False]


def test_buffered_bytes_limit_sheds_flows() -> None:
    sessions = Sessions()
    t = FlowTable(sessions, max_buffered=10_000)
    for port in range(1, 5):
        handshake(t, cport=port)
        # everything after a missing first segment waits
        for i in range(1, 5):
            t.segment(seg(C, port, S, 80, 1001 + i * 1000, 5001, ACK, b"z" * 1000), 10 + i)
    assert t.snapshot_stats().buffered_bytes <= 10_000
    assert t.stats.evicted_limit >= 1
    shed = [r for r in sessions.all if r.closed]
    assert shed and all(r.events[0] == ("gap", True, 1000) for r in shed)
