"""The hard cases: two network namespaces joined by a veth with a small MTU, a tc program
(netem's job; this kernel has no netem) reordering, duplicating and dropping packets on
both ends; large bodies across many
segments, retransmissions, out-of-order arrival, IPv4 and IPv6; then the same capture
started mid-connection and with segments missing."""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.packet.support import (
    compare_with_tshark,
    nodetap_pairs,
    read_frames,
    rrpair_msgs,
    tcpdump,
    write_frames,
)
from tests.support.lab import Lab
from tests.support.servers import free_port

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.bpf, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
# This kernel has no netem: impair.py does loss, duplication and reordering with a tc
# program and HTB. Per mille: 3% loss, 5% duplicates, 20% through a 20 Mbit/s slow lane.
IMPAIR = Path(__file__).with_name("impair.py")
IMPAIRMENT = ("30", "50", "200", "20000000")
BODY_SIZE = 400_000
UPLOAD = os.urandom(300_000)
SERVER = """
import http.server, socket
from tests.support.servers import _EchoHandler
class S(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()
s = S(("::", {port}), _EchoHandler)
s.daemon_threads = True
s.serve_forever()
"""


def _expected_bytes(n: int) -> bytes:
    return bytes(i % 251 for i in range(n))


@dataclass
class NetemCapture:
    pcap: Path
    port: int


@pytest.fixture(scope="module")
def netem_capture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetemCapture]:
    tmp = tmp_path_factory.mktemp("netem")
    upload = tmp / "upload.bin"
    upload.write_bytes(UPLOAD)
    port = free_port()
    with Lab() as lab:
        srv, cli = lab.netns("srv"), lab.netns("cli")
        link = lab.link(cli, srv)
        for ns, dev in ((cli, link.a_dev), (srv, link.b_dev)):
            # one MSS-sized segment per packet, so netem shuffles segments, not 64K blobs
            lab.run(ns, ["ip", "link", "set", "dev", dev, "mtu", "1280", "gso_max_segs", "1"])
            lab.run(ns, [sys.executable, str(IMPAIR), dev, *IMPAIRMENT], timeout=60)
        lab.popen(srv, [sys.executable, "-c", SERVER.format(port=port)], cwd=REPO)
        lab.run(
            cli,
            [
                sys.executable,
                "-c",
                "from tests.support.servers import wait_for_port;"
                f"wait_for_port('{link.b_ip}', {port})",
            ],
            timeout=20,
        )
        pcap = tmp / "netem.pcap"
        base4 = f"http://{link.b_ip}:{port}"
        base6 = f"http://[{link.b_ip6}]:{port}"
        curl = ["curl", "-s", "-g", "--max-time", "60"]
        with tcpdump(pcap, link.a_dev, f"tcp port {port}", netns=cli.name):
            lab.run(cli, [*curl, "-o", "/dev/null", f"{base4}/bytes/{BODY_SIZE}",
                          "-o", "/dev/null", f"{base4}/chunked/300",
                          "-o", "/dev/null", f"{base4}/bytes/{BODY_SIZE // 2}",
                          "-o", "/dev/null", f"{base4}/status/404",
                          "-o", "/dev/null", f"{base4}/bytes/1000"], timeout=90)  # fmt: skip
            lab.run(cli, [*curl, "-o", "/dev/null", "--data-binary", f"@{upload}",
                          f"{base4}/echo"], timeout=90)  # fmt: skip
            lab.run(cli, [*curl, "-o", "/dev/null", f"{base6}/bytes/{BODY_SIZE // 4}"], timeout=90)
        yield NetemCapture(pcap, port)


def test_netem_capture_matches_tshark_and_ground_truth(netem_capture: NetemCapture) -> None:
    pairs, counters = nodetap_pairs(netem_capture.pcap)
    assert compare_with_tshark(netem_capture.pcap, pairs, (netem_capture.port,)) == 14
    # netem did its job, and reassembly coped without losing a byte
    assert counters["out_of_order"] > 0
    assert counters["duplicate_bytes"] > 0
    assert counters["gaps"] == 0 and counters["conflicts"] == 0
    by_url = {p.http.req.url: p for p in pairs}
    assert by_url[f"/bytes/{BODY_SIZE}"].http.res.body == _expected_bytes(BODY_SIZE)
    assert by_url[f"/bytes/{BODY_SIZE // 2}"].http.res.body == _expected_bytes(BODY_SIZE // 2)
    v6 = by_url[f"/bytes/{BODY_SIZE // 4}"]
    assert v6.http.res.body == _expected_bytes(BODY_SIZE // 4)
    assert ":" in v6.client.ip and ":" in v6.server.ip
    echo = by_url["/echo"]
    assert echo.http.req.body == UPLOAD and echo.http.res.body == UPLOAD
    assert by_url["/chunked/300"].http.res.body == b"".join(
        f"chunk-{i}\n".encode() for i in range(300)
    )
    assert all(not p.flags for p in pairs)


def _keepalive_frames(capture: NetemCapture) -> tuple[int, list[tuple[int, bytes]], int]:
    """Link type, frames, and the client port of the five-request keep-alive connection."""
    pairs, _ = nodetap_pairs(capture.pcap)
    port = next(p.client.port for p in pairs if p.http.req.url == "/chunked/300")
    lt, frames = read_frames(capture.pcap)
    return lt, frames, port


def _tcp(frame: bytes) -> tuple[int, int, int, bytes]:
    """(sport, dport, seq, payload) of an IPv4 Ethernet frame."""
    ihl = (frame[14] & 15) * 4
    th = 14 + ihl
    total = int.from_bytes(frame[16:18], "big")
    off = (frame[th + 12] >> 4) * 4
    return (
        int.from_bytes(frame[th : th + 2], "big"),
        int.from_bytes(frame[th + 2 : th + 4], "big"),
        int.from_bytes(frame[th + 4 : th + 8], "big"),
        frame[th + off : 14 + total],
    )


def _keepalive_msgs(pairs: list) -> list:  # type: ignore[type-arg]
    return [rrpair_msgs(p) for p in sorted(pairs, key=lambda p: p.ts.ToNanoseconds())]


def test_capture_starting_mid_connection(netem_capture: NetemCapture, tmp_path: Path) -> None:
    lt, frames, cport = _keepalive_frames(netem_capture)
    # the frame that carries the middle of the first (400 kB) response
    server_data = [
        i for i, (_, f) in enumerate(frames)
        if f[12:14] == b"\x08\x00" and _tcp(f)[1] == cport and len(_tcp(f)[3]) > 0
    ]  # fmt: skip
    cut = server_data[len(server_data) // 5]
    late = tmp_path / "late.pcap"
    write_frames(late, lt, frames[cut:])
    full, _ = nodetap_pairs(netem_capture.pcap, ports=(netem_capture.port,))
    pairs, counters = nodetap_pairs(late, ports=(netem_capture.port,))
    assert counters["midstream_flows"] >= 1
    conn = [p for p in pairs if p.client.port == cport]
    assert all("preexisting" in p.flags for p in conn)
    # the first exchange was cut; the four after it are complete and identical
    want = _keepalive_msgs([p for p in full if p.client.port == cport])[1:]
    got = [m for m in _keepalive_msgs(conn) if m[0] is not None]
    assert got == want
    assert next(p.http.req.url for p in conn if p.http.HasField("req")) == "/chunked/300"


def test_missing_segments_flag_a_gap_and_parsing_resumes(
    netem_capture: NetemCapture, tmp_path: Path
) -> None:
    lt, frames, cport = _keepalive_frames(netem_capture)
    # every copy of the bytes of one segment in the middle of the first response: gone
    data = [(i, _tcp(f)) for i, (_, f) in enumerate(frames) if f[12:14] == b"\x08\x00"]
    resp = [(i, t) for i, t in data if t[1] == cport and t[3]]
    _, (_, _, seq, payload) = resp[len(resp) // 2]
    lo, hi = seq, seq + len(payload)
    drop = {
        i
        for i, t in resp
        if t[2] < hi and t[2] + len(t[3]) > lo  # overlaps [lo, hi)
    }
    holed = tmp_path / "holed.pcap"
    write_frames(holed, lt, [f for i, f in enumerate(frames) if i not in drop])
    pairs, counters = nodetap_pairs(holed, ports=(netem_capture.port,))
    full, _ = nodetap_pairs(netem_capture.pcap, ports=(netem_capture.port,))
    assert counters["gaps"] == 1 and counters["gap_bytes"] == len(payload)
    conn = sorted((p for p in pairs if p.client.port == cport), key=lambda p: p.ts.ToNanoseconds())
    assert conn[0].http.req.url == f"/bytes/{BODY_SIZE}" and "gap" in conn[0].flags
    body = conn[0].http.res.body
    assert hashlib.sha256(body).digest() != hashlib.sha256(_expected_bytes(BODY_SIZE)).digest()
    # the stream resumes: the next four exchanges are exactly those of the full capture
    want = _keepalive_msgs([p for p in full if p.client.port == cport])[1:]
    assert _keepalive_msgs(conn[1:]) == want
    assert all(not p.flags for p in conn[1:])
