"""pcap synthesis from RRPairs: what nodetap writes, tshark and nodetap read back the same."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from agent.packet.pcap_export import write_pcap
from nodetap.v1 import rrpair_pb2 as pb
from tests.packet.conftest import LoCapture
from tests.packet.support import compare_with_tshark, nodetap_pairs, rrpair_msgs

pytestmark = pytest.mark.root  # the RRPairs come from a tcpdump capture

REPO = Path(__file__).resolve().parents[2]


def _key(p: pb.RRPair) -> tuple[object, ...]:
    return (p.client.ip, p.client.port, p.server.port, p.ts.ToNanoseconds(), rrpair_msgs(p))


def test_round_trip_through_pcap(lo_capture: LoCapture, tmp_path: Path) -> None:
    pairs, _ = nodetap_pairs(lo_capture.eth)
    out = tmp_path / "export.pcap"
    with open(out, "wb") as fp:
        assert write_pcap(pairs, fp) == len(pairs)
    again, counters = nodetap_pairs(out)
    assert counters["gaps"] == 0 and counters["malformed"] == 0
    assert counters["flows"] == len(pairs)  # one connection per RRPair
    assert sorted(map(_key, again), key=repr) == sorted(map(_key, pairs), key=repr)
    for a in again:
        assert not a.flags
    # Wireshark's dissector reads the synthetic file the same way
    assert compare_with_tshark(out, again) == 2 * len(pairs)
    # and checksums are right (tshark validates them when asked)
    bad = subprocess.run(
        ["tshark", "-r", str(out), "-o", "tcp.check_checksum:TRUE", "-o",
         "ip.check_checksum:TRUE", "-Y", "tcp.checksum.status == 0 || ip.checksum.status == 0"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert bad.strip() == ""


def test_ipv6_chunked_and_missing_parts(tmp_path: Path) -> None:
    p1 = pb.RRPair(id="a", l7protocol="http", direction=pb.NETWORK, ttfb_us=100, duration_us=300)
    p1.ts.FromNanoseconds(1_700_000_000_123_456_789)
    p1.client.ip, p1.client.port = "fd00::1", 41000
    p1.server.ip, p1.server.port = "fd00::2", 8080
    req, res = p1.http.req, p1.http.res
    req.method, req.url, req.version = "POST", "/up?x=1", "HTTP/1.1"
    req.headers.add(name="Host", value="svc")
    req.headers.add(name="Content-Length", value="5000")
    req.body, req.body_size = b"b" * 5000, 5000
    res.status_code, res.status_message, res.version = 200, "OK", "HTTP/1.1"
    res.headers.add(name="Transfer-Encoding", value="chunked")
    res.body, res.body_size = b"chunked body " * 300, 3900
    res.trailers.add(name="X-Sum", value="1")
    p2 = pb.RRPair(id="b", l7protocol="http")  # a request without response, no addresses
    p2.http.req.method, p2.http.req.url, p2.http.req.version = "GET", "/", "HTTP/1.0"
    p3 = pb.RRPair(id="c")  # no HTTP payload: skipped
    out = tmp_path / "synthetic.pcap"
    with open(out, "wb") as fp:
        assert write_pcap([p1, p2, p3], fp) == 2
    again, _ = nodetap_pairs(out)
    by_id = {p.http.req.url: p for p in again}
    a = by_id["/up?x=1"]
    assert (a.client.ip, a.client.port, a.server.ip, a.server.port) == (
        "fd00::1", 41000, "fd00::2", 8080,
    )  # fmt: skip
    assert a.ts.ToNanoseconds() == p1.ts.ToNanoseconds()
    assert a.ttfb_us == 100 and a.duration_us == 300
    assert a.http.req.body == req.body and a.http.res.body == res.body
    assert [(h.name, h.value) for h in a.http.res.trailers] == [("X-Sum", "1")]
    b = by_id["/"]
    assert not b.http.HasField("res") and b.server.port == 80
    assert compare_with_tshark(out, again, (8080, 80)) == 3


def test_export_command_writes_pcap(lo_capture: LoCapture, tmp_path: Path) -> None:
    """nodetap import | nodetap export --format pcap | nodetap import: the same exchanges."""
    jsonl_path, pcap = tmp_path / "pairs.jsonl", tmp_path / "out.pcap"
    for argv in (
        ["import", str(lo_capture.eth), "-o", str(jsonl_path), "-q"],
        ["export", "--input", str(jsonl_path), "--format", "pcap", "-o", str(pcap)],
    ):
        proc = subprocess.run(
            [sys.executable, "-m", "cli", *argv],
            capture_output=True, text=True, cwd=REPO, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    again, _ = nodetap_pairs(pcap)
    pairs, _ = nodetap_pairs(lo_capture.eth)
    assert sorted(map(_key, again), key=repr) == sorted(map(_key, pairs), key=repr)
