"""The fast JSON writer (nodetap/rrpair_json.py) writes the proto3 JSON mapping that
google.protobuf.json_format writes, in its jq-friendly form (64-bit integers as numbers,
bodySize present when 0), and json_format.Parse reads it back to the same RRPair."""

from __future__ import annotations

import io
import json
import subprocess
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from hypothesis import given, settings
from hypothesis import strategies as st

from nodetap import jsonl, rrpair_json
from nodetap.v1 import rrpair_pb2 as pb

text = st.text(max_size=12)
headers = st.lists(st.tuples(text, text), max_size=4)


def _fill_headers(dst: object, hs: list[tuple[str, str]]) -> None:
    for n, v in hs:
        dst.add(name=n, value=v)  # type: ignore[attr-defined]


@st.composite
def rrpairs(draw: st.DrawFn) -> pb.RRPair:
    p = pb.RRPair(
        id=draw(text),
        duration_us=draw(st.integers(0, 2**62)),
        ttfb_us=draw(st.integers(0, 2**40)),
        l7protocol=draw(st.sampled_from(["", "http", "http2", "grpc"])),
        direction=draw(st.sampled_from([0, 1, 2, 3])),  # type: ignore[arg-type]
    )
    if draw(st.booleans()):
        p.ts.seconds = draw(st.integers(0, 4_000_000_000))
        p.ts.nanos = draw(st.sampled_from([0, 5_000_000, 123_000, 7, 999_999_999]))
    if draw(st.booleans()):
        p.client.ip = draw(text)
        p.client.port = draw(st.integers(0, 65535))
    if draw(st.booleans()):
        p.server.SetInParent()
    m = p.meta
    if draw(st.booleans()):
        m.node, m.comm, m.pod, m.source = draw(text), draw(text), draw(text), draw(text)
        m.pid = draw(st.integers(0, 2**32 - 1))
        m.conn_id = draw(st.integers(0, 2**64 - 1))
        m.labels.update(draw(st.dictionaries(text, text, max_size=3)))
        m.container_id, m.namespace = draw(text), draw(text)
        m.agent_version, m.cluster, m.container, m.workload = (
            draw(text), draw(text), draw(text), draw(text),
        )  # fmt: skip
    p.flags.extend(draw(st.lists(text, max_size=3)))
    if draw(st.booleans()):
        r = p.http.req
        r.method, r.url, r.version = draw(text), draw(text), draw(text)
        _fill_headers(r.headers, draw(headers))
        _fill_headers(r.trailers, draw(headers))
        r.body = draw(st.binary(max_size=40))
        r.body_size = draw(st.integers(0, 2**50))
    if draw(st.booleans()):
        s = p.http.res
        s.status_code = draw(st.integers(0, 999))
        s.status_message, s.version = draw(text), draw(text)
        _fill_headers(s.headers, draw(headers))
        s.body = draw(st.binary(max_size=40))
        s.body_size = draw(st.integers(0, 2**50))
    if draw(st.booleans()):
        g = p.grpc
        g.service, g.method, g.status_message, g.encoding = (
            draw(text), draw(text), draw(text), draw(text),
        )  # fmt: skip
        g.status = draw(st.integers(-1, 16))
        g.request_messages.extend(draw(st.lists(st.binary(max_size=20), max_size=3)))
        g.response_messages.extend(draw(st.lists(st.binary(max_size=20), max_size=3)))
    return p


INT64_KEYS = {"durationUs", "ttfbUs", "bodySize", "connId"}


def jq_friendly(pair: pb.RRPair) -> dict[str, Any]:
    """MessageToJson's object with the two documented changes: 64-bit integers as numbers,
    bodySize present (0) in every request and response."""
    d = json.loads(json_format.MessageToJson(pair))

    def numbers(o: Any) -> Any:
        if isinstance(o, dict):
            return {k: int(v) if k in INT64_KEYS else numbers(v) for k, v in o.items()}
        if isinstance(o, list):
            return [numbers(v) for v in o]
        return o

    d = numbers(d)
    for side in ("req", "res"):
        if side in d.get("http", {}):
            d["http"][side].setdefault("bodySize", 0)
    return dict(d)


@settings(max_examples=300, deadline=None)
@given(rrpairs())
def test_fast_writer_equals_json_format(pair: pb.RRPair) -> None:
    line = rrpair_json.dumps(pair)
    assert json.loads(line) == jq_friendly(pair)
    # the proto3 JSON parser reads numbers for 64-bit fields: the same message back
    assert json_format.Parse(line, pb.RRPair()) == pair
    assert jsonl.loads(line) == pair


def test_jq_reads_numbers_and_zero_sizes() -> None:
    """Issue 25: `select(.durationUs > 1000)` compared strings; bodySize was absent when 0."""
    lines = []
    for i, duration in enumerate((5, 999, 1001, 2_000_000_000_000)):
        p = pb.RRPair(id=f"p{i}", duration_us=duration)
        p.http.req.method = "GET"
        p.http.res.status_code = 204
        lines.append(rrpair_json.dumps(p))
    r = subprocess.run(
        ["jq", "-c", "select(.durationUs > 1000) | [.id, .http.req.bodySize, .http.res.bodySize]"],
        input="\n".join(lines) + "\n",
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    assert r.stdout.splitlines() == ['["p2",0,0]', '["p3",0,0]']


def _populate(msg: object) -> None:
    """Set every field of a message (recursively) to a non-default value."""
    for f in msg.DESCRIPTOR.fields:  # type: ignore[attr-defined]
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            getattr(msg, f.name)["k"] = "v"
        elif f.type == FieldDescriptor.TYPE_MESSAGE:
            sub = getattr(msg, f.name).add() if f.is_repeated else getattr(msg, f.name)
            if f.message_type.full_name == "google.protobuf.Timestamp":
                sub.seconds, sub.nanos = 1, 2
            else:
                _populate(sub)
        else:
            value = {
                FieldDescriptor.TYPE_STRING: "x",
                FieldDescriptor.TYPE_BYTES: b"x",
                FieldDescriptor.TYPE_ENUM: 1,
            }.get(f.type, 7)
            if f.is_repeated:
                getattr(msg, f.name).append(value)
            else:
                setattr(msg, f.name, value)


def test_every_field_is_written() -> None:
    pair = pb.RRPair()
    _populate(pair)
    assert json.loads(rrpair_json.dumps(pair)) == jq_friendly(pair)
    assert json_format.Parse(rrpair_json.dumps(pair), pb.RRPair()) == pair


def test_jsonl_round_trip() -> None:
    pair = pb.RRPair(id="a", l7protocol="http", direction=pb.INBOUND)
    pair.http.req.method = "GET"
    buf = io.StringIO()
    jsonl.write(buf, pair)
    jsonl.write(buf, pair)
    buf.seek(0)
    assert list(jsonl.iter_file(buf)) == [pair, pair]
