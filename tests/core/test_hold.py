"""The core as the live capture drives it (``hold``): exchanges wait for the connection's
context, connection records go back to Python, connections are dropped on request, and a
panic costs one connection (counted)."""

from __future__ import annotations

import nodetap_core

from agent import bpf_layout as L
from nodetap.v1 import rrpair_pb2 as pb
from tests.core.paths import MONO_TO_WALL, PREFIX, Conn, conversation

GET = b"GET /h HTTP/1.1\r\nHost: x\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
PIECES: list[tuple[str, bytes | int]] = [("req", GET), ("res", OK), ("req", GET), ("res", OK)]


def _decoder() -> nodetap_core.Decoder:
    return nodetap_core.Decoder(1 << 20, PREFIX, MONO_TO_WALL, protobuf=True, jsonl=True, hold=True)


def _template(cid: int) -> bytes:
    t = pb.RRPair(direction=pb.INBOUND, flags=["preexisting"])
    t.client.ip, t.client.port = "10.0.0.1", 1234
    t.server.ip, t.server.port = "10.0.0.2", 80
    t.meta.pod, t.meta.namespace, t.meta.conn_id = "web-1", "shop", cid
    return t.SerializeToString()


def test_exchanges_wait_for_their_context() -> None:
    dec = _decoder()
    dec.feed_records(b"".join(conversation(Conn(1), PIECES)))
    assert dec.take_rrpairs() == [] and dec.waiting_contexts() == [1]
    kinds = [L.CONN_EVENT.unpack_from(r)[0] for r in dec.take_control()]
    assert kinds == [L.NT_EV_OPEN, L.NT_EV_CLOSE]
    dec.set_context(1, _template(1))
    pairs = [pb.RRPair.FromString(b) for b in dec.take_rrpairs()]
    assert len(pairs) == 2 and len(dec.take_jsonl()) == 2
    assert {p.meta.pod for p in pairs} == {"web-1"} and pairs[0].client.port == 1234
    assert pairs[0].flags == ["preexisting"] and pairs[0].http.res.body == b"ok"
    assert dec.waiting_contexts() == []


def test_context_given_early_is_used_at_once() -> None:
    dec = _decoder()
    c = Conn(2)
    recs = conversation(c, PIECES)
    dec.feed_records(recs[0])
    dec.set_context(2, _template(2))
    dec.feed_records(b"".join(recs[1:]))
    assert len(dec.take_rrpairs()) == 2


def test_dropped_connection_makes_nothing() -> None:
    dec = _decoder()
    recs = conversation(Conn(3), PIECES)
    dec.feed_records(b"".join(recs[:3]))
    dec.drop_conn(3)
    dec.feed_records(b"".join(recs[3:]))
    assert dec.take_rrpairs() == [] and dec.waiting_contexts() == []
    assert dec.counters()["records_untracked"] == 2


def test_not_http_is_reported_stopped() -> None:
    dec = _decoder()
    dec.feed_records(b"".join(conversation(Conn(4), [("req", b"\x16\x03\x01\x02\x00")])))
    assert dec.take_stopped() == [4]


def test_orphans_reported_once() -> None:
    dec = _decoder()
    c = Conn(5)
    c.open(0)
    dec.feed_records(c.data(c.req_dir, GET, 1000) + c.data(c.req_dir, GET, 2000))
    assert dec.take_orphans() == [(5, c.tgid, c.fd, 1000)]


def test_a_panic_costs_one_connection() -> None:
    dec = _decoder()
    dec._panic_on(6)
    dec.feed_records(b"".join(conversation(Conn(6), PIECES) + conversation(Conn(7, fd=8), PIECES)))
    dec.set_context(7, _template(7))
    assert len(dec.take_rrpairs()) == 2
    assert dec.counters()["panics"] >= 1 and 6 in dec.take_stopped()
