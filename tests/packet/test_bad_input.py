"""Hostile input to import and export (issue 22): pcapng timestamps that no calendar holds
(if_tsresol=0, an extreme if_tsoffset), a pcap without records, RRPairs that a pcap cannot
carry (non-ISO-8859-1 method, URL or header; a year past 2106), JSONL that is not UTF-8. Each
gives one clear line and a non-zero exit, never a traceback."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import pytest

from agent.packet.decode import LinkType
from agent.packet.pcapfile import PcapReader
from nodetap import jsonl
from nodetap.v1 import rrpair_pb2 as pb
from tests.packet.support import write_frames
from tests.packet.test_malformed import _http_frames

REPO = Path(__file__).resolve().parents[2]


def _cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "cli", *args],
        capture_output=True,
        cwd=REPO,
        timeout=120,
        input=stdin,
    )
    return subprocess.CompletedProcess(
        proc.args,
        proc.returncode,
        proc.stdout.decode("utf-8", "replace"),
        proc.stderr.decode("utf-8", "replace"),
    )


def _one_clear_line(proc: subprocess.CompletedProcess[str], code: int, *words: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.startswith("nodetap:")]
    assert lines, proc.stderr
    assert all(w in proc.stderr for w in words), proc.stderr


def _block(btype: int, body: bytes) -> bytes:
    body += b"\0" * (-len(body) % 4)
    n = 12 + len(body)
    return struct.pack("<II", btype, n) + body + struct.pack("<I", n)


def _pcapng(tsresol: int | None = None, tsoffset: int | None = None) -> bytes:
    """A pcapng (one Ethernet interface with these options) holding one HTTP exchange."""
    shb = _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
    opts = b""
    if tsresol is not None:
        opts += struct.pack("<HH", 9, 1) + bytes([tsresol]) + b"\0\0\0"
    if tsoffset is not None:
        opts += struct.pack("<HHq", 14, 8, tsoffset)
    opts += struct.pack("<HH", 0, 0)
    idb = _block(1, struct.pack("<HHI", LinkType.ETHERNET, 0, 262144) + opts)
    out = shb + idb
    for ts_us, frame in _http_frames():
        ticks = 1_700_000_000_000_000 + ts_us  # microseconds since 1970, as tcpdump writes
        epb = struct.pack("<IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, len(frame), len(frame))
        out += _block(6, epb + frame)
    return out


def test_pcapng_timestamps_out_of_any_calendar(tmp_path: Path) -> None:
    good = tmp_path / "good.pcapng"
    good.write_bytes(_pcapng())
    proc = _cli("import", str(good))
    assert proc.returncode == 0 and proc.stdout.count("\n") == 1, proc.stderr
    # if_tsresol=0: one tick per second, so microsecond ticks are 54 million years away
    for name, data in (
        ("tsresol0", _pcapng(tsresol=0)),
        ("offset-max", _pcapng(tsoffset=2**63 - 1)),
        ("offset-min", _pcapng(tsoffset=-(2**63))),
    ):
        path = tmp_path / f"{name}.pcapng"
        path.write_bytes(data)
        proc = _cli("import", str(path))
        _one_clear_line(proc, 1, "timestamp", "if_tsresol")
        assert proc.stdout == ""
        with open(path, "rb") as fp:  # the reader stops there and says why
            reader = PcapReader(fp)
            assert list(reader) == [] and reader.error and "timestamp" in reader.error


def test_pcap_without_records_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "none.pcap"
    write_frames(path, LinkType.ETHERNET, [])
    proc = _cli("import", str(path))
    _one_clear_line(proc, 1, "no packets")
    piped = _cli("import", "-", stdin=path.read_bytes())
    _one_clear_line(piped, 1, "no packets")
    ng = tmp_path / "none.pcapng"
    ng.write_bytes(_pcapng()[: 28 + 32])  # section and interface, no packet
    _one_clear_line(_cli("import", str(ng)), 1, "no packets")


def _pair(**req: str) -> pb.RRPair:
    p = pb.RRPair(id="p1", l7protocol="http", direction=pb.INBOUND)
    p.ts.FromSeconds(1_700_000_000)
    r = p.http.req
    r.method, r.url, r.version = req.get("method", "GET"), req.get("url", "/"), "HTTP/1.1"
    h = r.headers.add()
    h.name, h.value = req.get("name", "Host"), req.get("value", "example")
    p.http.res.status_code = 200
    return p


@pytest.mark.parametrize(
    "field",
    [{"method": "G\u0100T"}, {"url": "/\u4e2d"}, {"name": "X-\u20ac"}, {"value": "\u2603"}],
)
def test_pcap_export_of_non_latin1_is_one_line(tmp_path: Path, field: dict[str, str]) -> None:
    src = tmp_path / "in.jsonl"
    with src.open("w") as f:
        jsonl.write(f, _pair())
        jsonl.write(f, _pair(**field))
    proc = _cli("export", "--input", str(src), "--format", "pcap", "-o", str(tmp_path / "o.pcap"))
    _one_clear_line(proc, 2, "p1", "ISO-8859-1")


def test_year_9999_in_export_and_rules_check(tmp_path: Path) -> None:
    src = tmp_path / "y9999.jsonl"
    p = _pair()
    p.ts.FromJsonString("9999-12-31T23:59:59.999999999Z")
    p.duration_us = 5_000_000
    with src.open("w") as f:
        jsonl.write(f, p)
    for fmt in ("jsonl", "har", "pcap"):
        proc = _cli("export", "--input", str(src), "--format", fmt, "-o", str(tmp_path / "o"))
        if fmt == "jsonl":
            assert proc.returncode == 0, proc.stderr
        else:
            _one_clear_line(proc, 2, "p1", fmt)
    rules = tmp_path / "rules.yaml"
    rules.write_text(_cli("rules", "example").stdout)
    for extra in ((), ("--details",), ("--json",)):
        proc = _cli("rules", "check", str(rules), "--against", str(src), *extra)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr


def test_non_utf8_jsonl_names_the_line(tmp_path: Path) -> None:
    src = tmp_path / "bad.jsonl"
    src.write_bytes(jsonl.dumps(_pair()).encode() + b"\n" + b'{"id":"\xff"}\n')
    proc = _cli("export", "--input", str(src))
    _one_clear_line(proc, 2, "bad.jsonl:2", "not UTF-8")
    rules = tmp_path / "rules.yaml"
    rules.write_text(_cli("rules", "example").stdout)
    proc = _cli("rules", "check", str(rules), "--against", str(src))
    _one_clear_line(proc, 2, "bad.jsonl:2", "not UTF-8")
    proc = _cli("export", "--input", "-", stdin=src.read_bytes())
    _one_clear_line(proc, 2, "<stdin>:2", "not UTF-8")
