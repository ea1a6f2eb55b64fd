"""HTTP/2 and gRPC from packets (the Rust core, fed by the packet path's reassembly).

tcpdump on lo (port filter) records nghttp2's h2load and curl --http2-prior-knowledge
against nghttpd, and grpcio calls of every kind against a grpcio server; ``nodetap import``
of that file is compared stream by stream with tshark's http2 dissector on the same file:
method, path, status, response body (HTTP/2), and service/method, grpc-status and every
message's bytes (gRPC; tshark's DATA frames cut at the 5-byte prefixes). Live packet mode
on lo decodes the same h2c traffic.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import grpc
import pytest

from agent.packet.live import run_packet_capture
from nodetap import jsonl
from nodetap.v1 import rrpair_pb2 as pb
from tests.packet.support import tcpdump
from tests.support.nghttpd import BIG, INDEX
from tests.support.nghttpd import nghttpd as serve_h2c
from tests.support.peers import grpc_echo

pytestmark = [pytest.mark.root]

REPO = Path(__file__).resolve().parents[2]
# (connection's client port, method, path, status, request body, response body) of an
# HTTP/2 stream; for gRPC the bodies are the tuples of messages and status is grpc-status
# (bodies as sha256 digests and sizes, so that a difference prints short)
Stream = tuple[int, str, str, str, tuple[str, ...], tuple[str, ...]]


def _digests(bodies: Iterable[bytes]) -> tuple[str, ...]:
    return tuple(f"{len(b)}:{hashlib.sha256(b).hexdigest()[:16]}" for b in bodies)


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[tuple[int, int]]:
    for tool in ("nghttpd", "h2load", "tshark", "tcpdump", "curl"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} missing (scripts/setup.sh installs it)")
    server, grpc_port = grpc_echo.serve()
    try:
        with serve_h2c(tmp_path) as h2_port:
            yield h2_port, grpc_port
    finally:
        server.stop(0)


def _h2_traffic(port: int) -> None:
    base = f"http://127.0.0.1:{port}"
    out = subprocess.run(
        ["h2load", "-n", "60", "-c", "2", "-m", "10", f"{base}/index.html", f"{base}/big.bin"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    assert "60 succeeded" in out, out
    for path in ("/big.bin", "/missing"):
        subprocess.run(
            ["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null", base + path],
            check=True, timeout=30,
        )  # fmt: skip


def _grpc_traffic(port: int) -> None:
    opts = grpc_echo.OPTIONS
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=opts) as ch:
        m = f"/{grpc_echo.SERVICE}/"
        assert ch.unary_unary(m + "Unary")(b"hello", timeout=30) == b"olleh"
        assert list(ch.unary_stream(m + "ServerStream")(b"ab", timeout=30)) == [
            b"ab", b"ab1", b"ab2",
        ]  # fmt: skip
        assert ch.stream_unary(m + "ClientStream")(iter([b"x", b"yz", b""]), timeout=30) == b"xyz"
        assert list(ch.stream_stream(m + "Bidi")(iter([b"a", b"bc"]), timeout=30)) == [
            b"A", b"BC",
        ]  # fmt: skip
        with pytest.raises(grpc.RpcError) as e:
            ch.unary_unary(m + "Fail")(b"it", timeout=30)
        assert e.value.code() == grpc.StatusCode.NOT_FOUND


def _messages(body: bytes) -> tuple[bytes, ...]:
    """gRPC's length-prefixed messages (none of these calls compresses)."""
    out = []
    while body:
        assert body[0] == 0, "a compressed message"
        n = int.from_bytes(body[1:5], "big")
        out.append(body[5 : 5 + n])
        body = body[5 + n :]
    return tuple(out)


def tshark_streams(pcap: Path, h2_port: int, grpc_port: int) -> Counter[Stream]:
    """Every HTTP/2 stream of the file as tshark's http2 dissector decodes it."""
    out = subprocess.run(
        ["tshark", "-r", str(pcap), "-d", f"tcp.port=={h2_port},http2",
         "-d", f"tcp.port=={grpc_port},http2", "-Y", "http2", "-T", "json",
         "-e", "tcp.srcport", "-e", "tcp.dstport", "-e", "http2.streamid", "-e", "http2.type",
         "-e", "http2.length", "-e", "http2.header.count", "-e", "http2.header.name",
         "-e", "http2.header.value", "-e", "http2.data.data"],
        capture_output=True, check=True, timeout=300,
    ).stdout  # fmt: skip
    # (client port, stream id) -> side ("req"/"res") -> its header blocks and DATA pieces
    heads: dict[tuple[int, int], dict[str, list[dict[str, str]]]] = {}
    data_of: dict[tuple[int, int], dict[str, list[bytes]]] = {}
    for pkt in json.loads(out):
        f = pkt["_source"]["layers"]
        sport, dport = int(f["tcp.srcport"][0]), int(f["tcp.dstport"][0])
        to_server = dport in (h2_port, grpc_port)
        client = sport if to_server else dport
        side = "req" if to_server else "res"
        counts = iter(int(c) for c in f.get("http2.header.count", []))
        names = iter(f.get("http2.header.name", []))
        values = iter(f.get("http2.header.value", []))
        data = iter(f.get("http2.data.data", []))
        for sid, typ, length in zip(
            f["http2.streamid"], f["http2.type"], f["http2.length"], strict=True
        ):
            key = (client, int(sid))
            h = heads.setdefault(key, {"req": [], "res": []})
            d = data_of.setdefault(key, {"req": [], "res": []})
            if typ == "1":  # HEADERS (no CONTINUATION from these peers)
                h[side].append({next(names): next(values) for _ in range(next(counts))})
            elif typ == "0":  # an empty one's data shows as "<MISSING>"
                value = next(data)
                piece = b"" if value == "<MISSING>" else bytes.fromhex(value.replace(":", ""))
                if len(piece) > int(length):  # tshark shows the whole body on its last frame
                    assert piece.startswith(b"".join(d[side])), "not the body"
                    d[side] = []
                d[side].append(piece)
        assert next(data, None) is None, "DATA frames and their data out of step"
    got: Counter[Stream] = Counter()
    for (client, sid), h in heads.items():
        if sid == 0 or not h["req"]:
            continue
        req = h["req"][0]
        res: dict[str, str] = {}
        for block in h["res"]:
            res.update(block)  # headers then trailers (grpc-status)
        breq, bres = (b"".join(data_of[(client, sid)][s]) for s in ("req", "res"))
        if req.get("content-type", "").startswith("application/grpc"):
            got[(client, req[":method"], req[":path"], res["grpc-status"],
                 _digests(_messages(breq)), _digests(_messages(bres)))] += 1  # fmt: skip
        else:
            got[(client, req[":method"], req[":path"], res[":status"],
                 _digests([breq]), _digests([bres]))] += 1  # fmt: skip
    return got


def rrpair_streams(pairs: list[pb.RRPair]) -> Counter[Stream]:
    got: Counter[Stream] = Counter()
    for p in pairs:
        assert list(p.flags) == [], (p.http.req.url, list(p.flags))
        if p.l7protocol == "grpc":
            g = p.grpc
            got[(p.client.port, p.http.req.method, f"/{g.service}/{g.method}", str(g.status),
                 _digests(g.request_messages), _digests(g.response_messages))] += 1  # fmt: skip
        else:
            assert p.l7protocol == "http2", p.l7protocol
            r, s = p.http.req, p.http.res
            got[(p.client.port, r.method, r.url, str(s.status_code),
                 _digests([r.body]), _digests([s.body]))] += 1  # fmt: skip
    return got


def test_h2c_and_grpc_pcap_import_matches_tshark(peers: tuple[int, int], tmp_path: Path) -> None:
    h2_port, grpc_port = peers
    pcap = tmp_path / "h2.pcap"
    with tcpdump(pcap, "lo", f"tcp port {h2_port} or tcp port {grpc_port}"):
        _h2_traffic(h2_port)
        _grpc_traffic(grpc_port)
    out = tmp_path / "pairs.jsonl"
    subprocess.run(
        [sys.executable, "-m", "cli", "import", str(pcap), "-o", str(out), "-q"],
        cwd=REPO, check=True, timeout=120,
    )  # fmt: skip
    pairs = [jsonl.loads(line) for line in out.read_bytes().splitlines()]
    assert all(p.direction == pb.NETWORK and p.meta.source == "pcap" for p in pairs)
    want = tshark_streams(pcap, h2_port, grpc_port)
    got = rrpair_streams(pairs)
    assert got - want == Counter() and want - got == Counter(), (got - want, want - got)
    # what the peers sent and received, independently of tshark
    kinds = Counter(
        (p.l7protocol, p.grpc.method if p.l7protocol == "grpc" else p.http.req.url) for p in pairs
    )
    assert kinds[("http2", "/index.html")] == 30 and kinds[("http2", "/big.bin")] == 31
    assert kinds[("http2", "/missing")] == 1
    assert {m for (proto, m) in kinds if proto == "grpc"} == {
        "Unary", "ServerStream", "ClientStream", "Bidi", "Fail",
    }  # fmt: skip
    big = [p for p in pairs if p.http.req.url == "/big.bin"]
    assert all(p.http.res.body == BIG for p in big)
    assert all(p.http.res.body == INDEX for p in pairs if p.http.req.url == "/index.html")
    (fail,) = [p for p in pairs if p.grpc.method == "Fail"]
    assert fail.grpc.status == 5 and fail.grpc.status_message == "no such thing: it ✓"


@pytest.mark.bpf
def test_live_packet_mode_h2c_on_lo(peers: tuple[int, int]) -> None:
    """Live packet mode (BPF socket filter on lo) decodes h2c and gRPC through the core."""
    h2_port, grpc_port = peers
    pairs: list[pb.RRPair] = []
    lock = threading.Lock()
    stop, ready = threading.Event(), threading.Event()
    summary: dict[str, int] = {}

    def emit(p: pb.RRPair) -> None:
        with lock:
            pairs.append(p)

    def target() -> None:
        summary.update(
            run_packet_capture("lo", [h2_port, grpc_port], emit, stop, 1 << 20, ready=ready)
        )

    t = threading.Thread(target=target, daemon=True)
    t.start()
    assert ready.wait(60), "packet capture did not start"
    try:
        _h2_traffic(h2_port)
        _grpc_traffic(grpc_port)
        deadline = time.monotonic() + 30  # the last frames still in the socket
        while len(pairs) < 67 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        t.join(60)
    assert not t.is_alive()
    assert summary["kernel_drops"] == 0
    urls = Counter(p.http.req.url for p in pairs if p.l7protocol == "http2")
    assert urls == {"/index.html": 30, "/big.bin": 31, "/missing": 1}, summary
    for p in pairs:
        assert p.meta.source == "packet" and not p.flags, (p.http.req.url, list(p.flags))
        if p.http.req.url == "/big.bin":
            assert p.http.res.body == BIG
    grpc_pairs = {p.grpc.method: p for p in pairs if p.l7protocol == "grpc"}
    assert set(grpc_pairs) == {"Unary", "ServerStream", "ClientStream", "Bidi", "Fail"}
    assert list(grpc_pairs["ServerStream"].grpc.response_messages) == [b"ab", b"ab1", b"ab2"]
    assert list(grpc_pairs["ClientStream"].grpc.request_messages) == [b"x", b"yz", b""]
    assert grpc_pairs["Fail"].grpc.status == 5
