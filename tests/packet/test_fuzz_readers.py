"""Fuzzing the readers of untrusted files for a bounded time (issue 22): pcap and pcapng
(import, down to the JSON line written), and JSONL (the protobuf reader of export and rules
check, and the replay's reader down to the bytes it would send). Mutations of valid files
(bytes replaced, inserted, cut) and of a valid RRPair line; each reader may only refuse with
its own error type, never raise anything else."""

from __future__ import annotations

import base64
import contextlib
import io
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.packet.decode import LinkType
from agent.packet.importer import import_pcap
from agent.packet.pcapfile import PcapFormatError
from agent.rrpairs import CapturedExchange
from nodetap import jsonl
from nodetap.errors import InputError
from replay.capture_file import item_from_line
from replay.model import UnsafeRequest, encode_request
from tests.packet.test_bad_input import _pcapng
from tests.packet.test_malformed import _http_frames

SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)


def _pcap() -> bytes:
    import struct

    out = struct.pack("<IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 1 << 18, LinkType.ETHERNET)
    for ts, buf in _http_frames():
        out += struct.pack("<IIII", ts // 10**9, ts % 10**9, len(buf), len(buf)) + buf
    return out


SEEDS = [_pcap(), _pcapng(), _pcapng(tsresol=9), _pcapng(tsoffset=-5)]

Edit = tuple[int, int, int]  # (kind, position, byte)


def _mutate(data: bytes, edits: list[Edit], cut: int | None) -> bytes:
    b = bytearray(data)
    for kind, pos, byte in edits:
        p = pos % (len(b) + 1)
        if kind == 0 and b:
            b[min(p, len(b) - 1)] = byte
        elif kind == 1:
            b[p:p] = bytes([byte])
        elif b:
            del b[min(p, len(b) - 1)]
    if cut is not None:
        del b[cut % (len(b) + 1) :]
    return bytes(b)


edits = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, 1 << 16), st.integers(0, 255)), max_size=12
)


@SETTINGS
@given(seed=st.sampled_from(range(len(SEEDS))), edits=edits, cut=st.none() | st.integers(0))
def test_pcap_and_pcapng_import_never_raise(seed: int, edits: list[Edit], cut: int | None) -> None:
    data = _mutate(SEEDS[seed], edits, cut)
    lines: list[dict[str, Any]] = []

    def on_exchange(captured: CapturedExchange) -> None:
        lines.append(json.loads(captured.json_line()))  # what `nodetap import` writes

    try:
        result = import_pcap(io.BytesIO(data), on_exchange=on_exchange)
    except PcapFormatError:
        return
    assert result.counters["rrpairs"] == len(lines)
    for d in lines:  # every line written is an RRPair the JSONL readers take back
        jsonl.loads(json.dumps(d))


TEMPLATE: dict[str, Any] = {
    "id": "t-1",
    "ts": "2026-01-02T03:04:05.123456789Z",
    "durationUs": 1500,
    "l7protocol": "http",
    "direction": "INBOUND",
    "server": {"ip": "127.0.0.1", "port": 8080},
    "http": {
        "req": {
            "method": "POST",
            "url": "/a?b=c",
            "version": "HTTP/1.1",
            "headers": [{"name": "Host", "value": "x"}, {"name": "X-A", "value": "1"}],
            "body": base64.b64encode(b'{"k": 1}').decode(),
            "bodySize": 8,
        },
        "res": {"statusCode": 200, "version": "HTTP/1.1", "headers": [], "bodySize": 0},
    },
}
LINE = json.dumps(TEMPLATE)
# Values a hostile or broken line may hold where a string, number, list or object belongs.
ODD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)
PATHS = [
    ("id",),
    ("ts",),
    ("durationUs",),
    ("direction",),
    ("server",),
    ("http",),
    ("http", "req"),
    ("http", "req", "method"),
    ("http", "req", "url"),
    ("http", "req", "version"),
    ("http", "req", "headers"),
    ("http", "req", "body"),
    ("http", "res"),
    ("http", "res", "statusCode"),
    ("http", "res", "body"),
    ("http", "res", "bodySize"),
]


def _read_everywhere(line: str) -> None:
    """The line through each JSONL reader: only their own refusals may come out."""
    with contextlib.suppress(jsonl.CaptureFormatError):
        jsonl.loads(line, "fuzz:1")
    try:
        item = item_from_line(line, 0, "fuzz:1")
    except InputError:
        return
    if item is not None:
        with contextlib.suppress(UnsafeRequest):
            encode_request(item, "127.0.0.1:8080", True)


@SETTINGS
@given(path=st.sampled_from(PATHS), value=ODD)
def test_jsonl_readers_with_wrong_types(path: tuple[str, ...], value: Any) -> None:
    d = json.loads(LINE)
    node = d
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    _read_everywhere(json.dumps(d))


@SETTINGS
@given(edits=edits, cut=st.none() | st.integers(0))
def test_jsonl_readers_with_mutated_bytes(edits: list[Edit], cut: int | None) -> None:
    raw = _mutate(LINE.encode(), edits, cut)
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        try:
            list(jsonl.iter_file(io.BytesIO(raw + b"\n"), "fuzz"))
        except jsonl.CaptureFormatError as e:
            # a newline the mutation inserted makes lines: an earlier one fails first, with
            # its own one-line error
            assert "not UTF-8" in str(e) or b"\n" in raw, e
        return
    _read_everywhere(line)
