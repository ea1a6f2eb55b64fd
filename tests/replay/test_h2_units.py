"""The pure parts of HTTP/2 and gRPC replay and mocks: items from http2/grpc RRPair JSON,
the gRPC comparison, the responder's message splitting and grpc-message encoding."""

from __future__ import annotations

import base64
import gzip
from pathlib import Path

import pytest

from nodetap.errors import ConfigError
from nodetap.grpc_json import Renderer
from replay.compare import Actual, Comparer
from replay.h2_items import bin_value, grpc_metadata, metadata_text
from replay.mocks import grpc_body
from replay.model import item_from_json
from replay.responder_h2 import grpc_message, split_messages


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode()


PAIR = {
    "id": "x-1",
    "l7protocol": "grpc",
    "http": {
        "req": {
            "method": "POST",
            "url": "/test.Echo/Unary",
            "version": "HTTP/2",
            "headers": [
                {"name": ":method", "value": "POST"},
                {"name": ":scheme", "value": "http"},
                {"name": ":path", "value": "/test.Echo/Unary"},
                {"name": ":authority", "value": "127.0.0.1:9"},
                {"name": "content-type", "value": "application/grpc"},
                {"name": "te", "value": "trailers"},
                {"name": "x-tenant", "value": "a"},
                {"name": "trace-bin", "value": _b64(b"\x00\x01")},
            ],
        },
        "res": {"statusCode": 200, "headers": [{"name": ":status", "value": "200"}]},
    },
    "grpc": {
        "service": "test.Echo",
        "method": "Unary",
        "status": 5,
        "statusMessage": "no such thing",
        "requestMessages": [_b64(b"hello")],
        "responseMessages": [_b64(b"olleh"), _b64(b"")],
    },
}


def test_grpc_item_from_json() -> None:
    item = item_from_json(PAIR, 0)
    assert item is not None and item.proto == "grpc" and item.messages == [b"hello"]
    assert item.authority == "127.0.0.1:9" and item.scheme == "http"
    assert all(not n.startswith(":") for n, _ in item.headers)
    assert grpc_metadata(item.headers) == [("x-tenant", "a"), ("trace-bin", b"\x00\x01")]
    e = item.expected
    assert e is not None and e.grpc_status == 5 and e.messages == [b"olleh", b""]
    assert e.grpc_message == "no such thing" and e.grpc_path == "/test.Echo/Unary"
    h2 = {**PAIR, "l7protocol": "http2"}
    del h2["grpc"]
    item2 = item_from_json(h2, 1)
    assert item2 is not None and item2.proto == "http2" and item2.expected is not None
    assert item2.expected.grpc_status is None


def _actual(status: int, message: str, msgs: list[bytes]) -> Actual:
    return Actual(200, [], None, "", 0, grpc_status=status, grpc_message=message, messages=msgs)


def test_grpc_comparison() -> None:
    item = item_from_json(PAIR, 0)
    assert item is not None and item.expected is not None
    exp, cmp = item.expected, Comparer()
    assert cmp.compare(exp, _actual(5, "no such thing", [b"olleh", b""])) == []
    assert cmp.compare(exp, _actual(0, "", [b"olleh", b""])) == [
        "grpc-status: recorded 5 'no such thing', replayed 0 ''"
    ]
    assert cmp.compare(exp, _actual(5, "other", [b"olleh", b""])) == [
        "grpc-message: recorded 'no such thing', replayed 'other'"
    ]
    d = cmp.compare(exp, _actual(5, "no such thing", [b"ollex"]))
    assert d[0] == "messages: recorded 2, replayed 1"
    assert d[1].startswith("message 0: differs, first at byte 4 (recorded 5 bytes")


def test_a_grpc_call_is_cut_only_when_flagged() -> None:
    """The RRPair of a call leaves the HTTP body empty (its bytes are the messages) while
    bodySize counts them: that is no cut, and a replayed message longer than the recorded
    one (a timestamp's nanos one varint byte longer) is compared whole."""
    http = {"req": PAIR["http"]["req"], "res": {"statusCode": 200, "bodySize": "20"}}  # type: ignore[index]
    whole = {**PAIR, "http": http}
    item = item_from_json(whole, 0)
    assert item is not None and item.expected is not None
    assert not item.expected.truncated
    d = Comparer().compare(item.expected, _actual(5, "no such thing", [b"olleh!", b""]))
    assert len(d) == 1
    assert d[0].startswith("message 0: differs, one is a prefix of the other (recorded 5 bytes")
    assert "replayed 6 bytes" in d[0]
    cut = item_from_json({**whole, "flags": ["truncated"]}, 0)
    assert cut is not None and cut.expected is not None and cut.expected.truncated
    assert Comparer().compare(cut.expected, _actual(5, "no such thing", [b"olleh", b"!"])) == []


def test_grpc_metadata_comparison() -> None:
    """Initial metadata and trailers compared like headers: grpc-status/-message and the
    transport's fields left to the status check, volatile ones ignored, -bin values the same
    in base64 (padded or not) and in gRPC's true-binary form (NUL, then the bytes)."""
    trailers = [
        {"name": "grpc-status", "value": "5"},
        {"name": "grpc-message", "value": "no such thing"},
        {"name": "x-sum", "value": "abc"},
        {"name": "x-sum-bin", "value": "\x00\x00\x01\xfe"},
    ]
    res = {
        "statusCode": 200,
        "headers": [
            {"name": ":status", "value": "200"},
            {"name": "content-type", "value": "application/grpc"},
            {"name": "grpc-accept-encoding", "value": "identity,gzip"},
            {"name": "date", "value": "Sat, 05 Dec 2026 01:00:00 GMT"},
            {"name": "x-version", "value": "1"},
        ],
        "trailers": trailers,
    }
    pair = {**PAIR, "http": {**PAIR["http"], "res": res}}  # type: ignore[dict-item]
    item = item_from_json(pair, 0)
    assert item is not None and item.expected is not None
    exp, cmp = item.expected, Comparer()
    assert bin_value("\x00\x00\x01\xfe") == b"\x00\x01\xfe" == bin_value("AAH+")
    same_trailers = metadata_text([("x-sum", "abc"), ("x-sum-bin", b"\x00\x01\xfe")])
    act = _actual(5, "no such thing", [b"olleh", b""])
    act.headers, act.trailers = [("x-version", "1")], same_trailers
    assert cmp.compare(exp, act) == []
    act.headers, act.trailers = [("x-extra", "e")], [("x-sum", "abd")]
    assert cmp.compare(exp, act) == [
        "header x-extra: extra 'e'",
        "trailer x-sum: recorded 'abc', replayed 'abd'",
        "trailer x-sum-bin: missing (recorded 'AAH+')",
        "header x-version: missing (recorded '1')",
    ]
    assert Comparer(compare_headers=False).compare(exp, act) == []


def test_responder_splits_grpc_bodies() -> None:
    body = grpc_body([b"a", b"", b"bc"])
    assert split_messages(body, "identity") == [b"a", b"", b"bc"]
    z = gzip.compress(b"zipped")
    framed = b"\x01" + len(z).to_bytes(4, "big") + z
    assert split_messages(framed, "gzip") == [b"zipped"]
    assert split_messages(framed, "snappy") is None  # unknown encoding: no match
    assert split_messages(body[:-1], "identity") is None  # cut mid-message
    assert grpc_message("no such thing: x ✓ 100%") == "no such thing: x %E2%9C%93 100%25"


def test_descriptor_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No such file"):
        Renderer(str(tmp_path / "missing.pb"))
    (tmp_path / "empty.pb").write_bytes(b"")
    with pytest.raises(ConfigError, match=r"holds no \.proto files"):
        Renderer(str(tmp_path / "empty.pb"))
    (tmp_path / "bad.pb").write_bytes(b"\xff\xff\xff")
    with pytest.raises(ConfigError, match="not a FileDescriptorSet"):
        Renderer(str(tmp_path / "bad.pb"))
