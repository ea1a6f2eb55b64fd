"""An h2c pcap (h2load and curl talking to nghttpd through the recording relay, written as
a pcap by tests/support/pcap_write.py), its TCP connections reassembled by the packet
path's flow table (agent/packet), decoded by the core, and compared stream by stream with
tshark's http2 dissector on the same file: every request's and response's header list, in
wire order."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

from agent.packet.decode import NotTcp, decode
from agent.packet.flows import FlowInfo, FlowTable
from agent.packet.pcapfile import PcapReader
from tests.core.h2_feed import SERVER
from tests.core.h2_feed import decode as decode_h2
from tests.support.pcap_write import write_pcap
from tests.support.relay import Recorded, Relay
from tests.support.servers import free_port, wait_for_port

pytestmark = pytest.mark.skipif(
    shutil.which("nghttpd") is None or shutil.which("tshark") is None,
    reason="nghttp2-server and tshark are installed by scripts/setup.sh",
)

Block = tuple[tuple[str, str], ...]


class _Recorder:
    """A flow table session that keeps a connection's bytes (no protocol parsing)."""

    def __init__(self, rec: Recorded) -> None:
        self.rec = rec

    def data(self, from_client: bool, data: bytes, ts_ns: int) -> None:
        self.rec.pieces.append(("req" if from_client else "res", bytes(data), ts_ns))

    def gap(self, from_client: bool, size: int, ts_ns: int) -> None:
        raise AssertionError(f"the capture lost {size} bytes")

    def close(self, ts_ns: int) -> None:
        self.rec.closed = True


def connections(pcap: Path) -> list[Recorded]:
    """The pcap's TCP connections, in order of their first packet."""
    conns: list[Recorded] = []

    def factory(info: FlowInfo) -> _Recorder:
        conns.append(Recorded())
        return _Recorder(conns[-1])

    flows = FlowTable(factory)
    with pcap.open("rb") as fp:
        for ts_ns, linktype, buf, _ in PcapReader(fp):
            try:
                flows.segment(decode(linktype, buf), ts_ns)
            except NotTcp:
                continue
    flows.close_all()
    return conns


def tshark_streams(pcap: Path, port: int) -> dict[int, Counter[tuple[Block, Block]]]:
    """Per TCP connection: (request header block, response header block) of every HTTP/2
    stream, as tshark decodes them."""
    out = subprocess.run(
        ["tshark", "-r", str(pcap), "-d", f"tcp.port=={port},http2", "-Y", "http2.type == 1",
         "-T", "json", "-e", "tcp.stream", "-e", "tcp.srcport", "-e", "http2.streamid",
         "-e", "http2.type", "-e", "http2.header.count", "-e", "http2.header.name",
         "-e", "http2.header.value"],
        capture_output=True, check=True, timeout=120,
    ).stdout  # fmt: skip
    blocks: dict[tuple[int, int], dict[str, list[Block]]] = {}
    for pkt in json.loads(out):
        layer = pkt["_source"]["layers"]
        tcp = int(layer["tcp.stream"][0])
        side = "res" if int(layer["tcp.srcport"][0]) == port else "req"
        counts = iter(int(c) for c in layer.get("http2.header.count", []))
        names = iter(layer.get("http2.header.name", []))
        values = iter(layer.get("http2.header.value", []))
        for sid, typ in zip(layer["http2.streamid"], layer["http2.type"], strict=True):
            if typ != "1":
                continue
            hs = tuple((next(names), next(values)) for _ in range(next(counts)))
            blocks.setdefault((tcp, int(sid)), {"req": [], "res": []})[side].append(hs)
    streams: dict[int, Counter[tuple[Block, Block]]] = {}
    for (tcp, _), b in blocks.items():
        streams.setdefault(tcp, Counter())[(b["req"][0], b["res"][0])] += 1
    return streams


def test_h2c_pcap_matches_tshark(tmp_path: Path) -> None:
    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_bytes(b"<p>hello</p>\n" * 40)
    (www / "big.bin").write_bytes(os.urandom(200_000))
    port = free_port()
    server = subprocess.Popen(
        ["nghttpd", "--no-tls", "-d", str(www), "-a", "127.0.0.1", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port("127.0.0.1", port)
        with Relay(("127.0.0.1", port)) as relay:
            base = f"http://127.0.0.1:{relay.port}"
            subprocess.run(
                [
                    "h2load",
                    "-n",
                    "200",
                    "-c",
                    "2",
                    "-m",
                    "20",
                    f"{base}/index.html",
                    f"{base}/big.bin",
                ],
                capture_output=True,
                check=True,
                timeout=120,
            )
            for path in ("/big.bin", "/missing"):
                subprocess.run(
                    ["curl", "-sS", "--http2-prior-knowledge", "-o", os.devnull, base + path],
                    check=True,
                    timeout=30,
                )
            relay.wait_closed()
    finally:
        server.terminate()
        server.wait(timeout=10)
    pcap = tmp_path / "h2c.pcap"
    write_pcap(relay.conns, pcap, port)
    conns = connections(pcap)
    want = tshark_streams(pcap, port)
    assert len(conns) == len(want) == 4
    for i, rec in enumerate(conns):
        assert rec.side("req") == relay.conns[i].side("req")
        pairs, counters = decode_h2([rec], SERVER)
        assert counters["h2_blocks_unknown_entries"] == 0
        got: Counter[tuple[Block, Block]] = Counter()
        for p in pairs:
            assert list(p.flags) == [] and p.l7protocol == "http2"
            got[
                (
                    tuple((h.name, h.value) for h in p.http.req.headers),
                    tuple((h.name, h.value) for h in p.http.res.headers),
                )
            ] += 1
        assert got == want[i], f"connection {i}"
    assert [sum(want[i].values()) for i in range(4)] == [100, 100, 1, 1]
