"""The core's Python boundary: contexts from Python, counters, and a panic inside the core
that costs one connection, never the caller."""

from __future__ import annotations

import nodetap_core
import orjson

from nodetap import rrpair_json
from nodetap.v1 import rrpair_pb2 as pb
from tests.core.paths import MONO_TO_WALL, PREFIX, Conn, conversation, python_path

EXCHANGE: list[tuple[str, bytes | int]] = [
    ("req", b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"),
    ("res", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
]


def _decoder() -> nodetap_core.Decoder:
    return nodetap_core.Decoder(1 << 20, PREFIX, MONO_TO_WALL, protobuf=True, jsonl=True)


def test_context_from_python_is_used_whole() -> None:
    """A context set from Python (enrichment: node, pod, labels, flags) replaces the one the
    core builds from the OPEN record; it may come before the OPEN record."""
    ctx = pb.RRPair(direction=pb.INBOUND, flags=["preexisting"])
    ctx.client.ip, ctx.client.port = "10.0.0.1", 1234
    ctx.server.ip, ctx.server.port = "10.0.0.2", 80
    m = ctx.meta
    m.node, m.pid, m.comm, m.source, m.conn_id = "n1", 7, "web", "syscall", 1
    m.namespace, m.pod, m.workload, m.agent_version = "ns", "pod-1", "Deployment/web", "1.2"
    m.labels["app"] = "web"
    m.labels["tier"] = "front"
    dec = _decoder()
    dec.set_context(1, ctx.SerializeToString())
    dec.feed_records(b"".join(conversation(Conn(1), EXCHANGE)))
    [raw] = dec.take_rrpairs()
    [line] = dec.take_jsonl()
    got = pb.RRPair.FromString(raw)
    want = python_path([b"".join(conversation(Conn(1), EXCHANGE))])[0]
    want.meta.CopyFrom(m)
    want.client.CopyFrom(ctx.client)
    want.server.CopyFrom(ctx.server)
    want.flags.append("preexisting")
    assert got == want
    # the Python path writes labels in the protobuf map's iteration order (unspecified);
    # the core writes them sorted by key: equal as JSON, not always byte for byte
    assert orjson.loads(line) == orjson.loads(rrpair_json.dumps(want))
    assert list(orjson.loads(line)["meta"]["labels"]) == ["app", "tier"]
    assert dec.take_rrpairs() == [] and dec.take_jsonl() == []


def test_a_panic_costs_one_connection() -> None:
    dec = _decoder()
    dec._panic_on(2)
    recs = conversation(Conn(1), EXCHANGE) + conversation(Conn(2, fd=8), EXCHANGE)
    recs += conversation(Conn(3, fd=9), EXCHANGE)
    dec.feed_records(b"".join(recs))  # no exception
    got = [pb.RRPair.FromString(b).meta.conn_id for b in dec.take_rrpairs()]
    assert got == [1, 3]
    c = dec.counters()
    assert c["panics"] >= 1
    assert c["rrpairs"] == 2


def test_counters_and_invalid_input() -> None:
    dec = _decoder()
    dec.feed_records(b"\x05\x00\x00\x00\x00\x00\x00\x00\x09\x01\x02\x03\x04\x00\x00\x00")
    dec.feed_records(b"\x01\x02")  # a truncated header: ignored
    dec.feed_records(b"".join(conversation(Conn(1), EXCHANGE)))
    c = dec.counters()
    assert c["invalid_records"] == 1
    assert c["rrpairs"] == 1 and c["conns_tracked"] == 1 and c["panics"] == 0
    assert c["records"] == 5
