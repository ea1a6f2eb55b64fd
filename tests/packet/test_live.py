"""Live packet mode on a veth between the root namespace and a server's namespace,
captured from the root namespace, compared with syscall capture of the same exchanges."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from agent.packet.live import run_packet_capture
from nodetap.v1 import rrpair_pb2 as pb
from tests.packet.support import read_frames, rrpair_msgs, tcpdump
from tests.support.capture import live_capture
from tests.support.lab import Lab, Link
from tests.support.servers import free_port, nginx, wait_for_port

pytestmark = [pytest.mark.bpf, pytest.mark.root, pytest.mark.netns]

REPO = Path(__file__).resolve().parents[2]
SERVER = """
import http.server, socket, sys
from tests.support.servers import _EchoHandler
class S(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
    def server_bind(self):
        self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        super().server_bind()
s = S(("::", int(sys.argv[1])), _EchoHandler)
s.daemon_threads = True
s.serve_forever()
"""
UPLOAD = os.urandom(150_000)
SLOW_CLIENT = """
import http.client, sys, time
conn = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=30)
for i in range(10):
    conn.request("GET", f"/bytes/{100_000 + i}")
    assert len(conn.getresponse().read()) == 100_000 + i
    if i == 4:
        print("half", flush=True)
    time.sleep(0.25)
conn.close()
"""


@dataclass
class PacketRun:
    """run_packet_capture in a thread, collecting RRPairs."""

    pairs: list[pb.RRPair] = field(default_factory=list)
    summary: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self) -> int:
        with self.lock:
            return len(self.pairs)


@contextlib.contextmanager
def packet_capture(
    dev: str, ports: list[int], on_pair: Callable[[pb.RRPair], None] | None = None, **kw: object
) -> Iterator[PacketRun]:
    run = PacketRun()
    stop, ready = threading.Event(), threading.Event()

    def emit(pair: pb.RRPair) -> None:
        with run.lock:
            run.pairs.append(pair)
        if on_pair is not None:
            on_pair(pair)

    def target() -> None:
        run.summary.update(
            run_packet_capture(dev, ports, emit, stop, 1 << 20, ready=ready, **kw)  # type: ignore[arg-type]
        )

    t = threading.Thread(target=target, daemon=True)
    t.start()
    assert ready.wait(30), "packet capture did not start"
    try:
        yield run
    finally:
        stop.set()
        t.join(30)
    assert not t.is_alive()


def _wait(pred: Callable[[], bool], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _wait_port(ip: str, port: int) -> None:
    wait_for_port(ip, port, timeout=20)


@pytest.fixture
def lab_server() -> Iterator[tuple[Lab, Link, int]]:
    port = free_port()
    with Lab() as lab:
        srv = lab.netns("srv")
        link = lab.link(None, srv)  # host end (a) in the root namespace
        lab.popen(srv, [sys.executable, "-c", SERVER, str(port)], cwd=REPO)
        code = (
            f"from tests.support.servers import wait_for_port; wait_for_port('{link.b_ip}', {port})"
        )
        subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=20)
        yield lab, link, port


def _curl(*args: str) -> None:
    subprocess.run(["curl", "-s", "-g", "--max-time", "30", *args], check=True, timeout=60)


def test_live_packets_match_syscall_capture(
    lab_server: tuple[Lab, Link, int], tmp_path: Path
) -> None:
    lab, link, port = lab_server
    other = free_port()
    lab.popen(lab.namespaces[0], [sys.executable, "-c", SERVER, str(other)], cwd=REPO)
    upload = tmp_path / "up.bin"
    upload.write_bytes(UPLOAD)
    base = f"http://{link.b_ip}:{port}"
    with live_capture(ports=[port]) as lc, packet_capture(link.a_dev, [port]) as run:
        _curl("-o", "/dev/null", f"{base}/bytes/200000", "-o", "/dev/null", f"{base}/chunked/50")
        _curl("-o", "/dev/null", "--data-binary", f"@{upload}", f"{base}/echo")
        _curl("-o", "/dev/null", f"http://[{link.b_ip6}]:{port}/status/404")
        # traffic on another port: dropped by the filter in the kernel
        _wait_port(link.b_ip, other)
        _curl("-o", "/dev/null", f"http://{link.b_ip}:{other}/bytes/100000")
        _wait(lambda: run.count() >= 4)
        inbound = lc.wait_for(4, timeout=20, where=lambda p: p.direction == pb.INBOUND)
    pkt = sorted(run.pairs, key=lambda p: p.http.req.url)
    sysc = sorted(inbound, key=lambda p: p.http.req.url)
    assert [p.http.req.url for p in pkt] == ["/bytes/200000", "/chunked/50", "/echo", "/status/404"]
    assert [rrpair_msgs(p) for p in pkt] == [rrpair_msgs(p) for p in sysc]
    for p, s in zip(pkt, sysc, strict=True):
        assert p.direction == pb.NETWORK and p.meta.source == "packet"
        assert p.server.port == port and p.client.port == s.client.port
        assert not p.flags
    assert pkt[2].http.req.body == UPLOAD and pkt[2].http.res.body == UPLOAD
    assert ":" in pkt[3].client.ip  # the IPv6 one
    summary = run.summary
    assert summary["rrpairs"] == 4 and summary["gaps"] == 0
    assert summary["kernel_drops"] == 0 and summary["kernel_packets"] == summary["packets"]
    assert summary["filter_kept"] == summary["packets"]
    # the other port's connection reached the filter and stayed in the kernel
    assert summary["filter_seen"] >= summary["filter_kept"] + 20


HOPOPTS_CLIENT = """
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
# a hop-by-hop options header (PadN) on every packet the client sends
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_HOPOPTS, bytes([0, 0, 1, 4, 0, 0, 0, 0]))
s.connect((sys.argv[1], int(sys.argv[2])))
s.sendall(b"POST /ext HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 3\\r\\n\\r\\nabc")
data = b""
while not data.endswith(b"abc"):
    data += s.recv(65536)
s.close()
"""


def test_ipv6_extension_headers(lab_server: tuple[Lab, Link, int], tmp_path: Path) -> None:
    """The filter walks IPv6 extension headers in the kernel; the decoder does in Python."""
    _lab, link, port = lab_server
    pcap = tmp_path / "ext.pcap"
    with packet_capture(link.a_dev, [port]) as run, tcpdump(pcap, link.a_dev, "ip6"):
        subprocess.run(
            [sys.executable, "-c", HOPOPTS_CLIENT, link.b_ip6, str(port)], check=True, timeout=30
        )
        _wait(lambda: run.count() >= 1)
    (pair,) = run.pairs
    assert pair.http.req.url == "/ext" and pair.http.res.body == b"abc"
    assert not pair.flags
    # the client's packets did carry the header (a libpcap "tcp port" filter misses them:
    # it looks for TCP right after the fixed IPv6 header)
    _lt, frames = read_frames(pcap)
    assert any(f[12:14] == b"\x86\xdd" and f[14 + 6] == 0 for _, f in frames)


def test_kernel_drops_are_counted_and_flag_gaps(lab_server: tuple[Lab, Link, int]) -> None:
    """A small socket buffer and a stalled reader: the kernel drops packets, the summary
    and the metric count them, and the exchanges that lost bytes carry the gap flag."""
    _lab, link, port = lab_server
    before = REGISTRY.get_sample_value("nodetap_packet_kernel_drops_total") or 0.0
    stalled, release = threading.Event(), threading.Event()

    def stall(pair: pb.RRPair) -> None:
        if not stalled.is_set():
            stalled.set()
            release.wait(30)  # the reader stops draining the ring until the test says

    base = f"http://{link.b_ip}:{port}"
    with packet_capture(link.a_dev, [port], on_pair=stall, rcvbuf=1 << 16) as run:
        _curl("-o", "/dev/null", f"{base}/status/204")
        _wait(stalled.is_set)
        # one connection that lasts longer than the stall: its bytes before and after the
        # stall are seen, those during it are lost. The stall ends once five of its 100 kB
        # answers went by (not after a fixed time: a loaded machine may start the client late)
        client = subprocess.Popen(
            [sys.executable, "-c", SLOW_CLIENT, link.b_ip, str(port)],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert client.stdout is not None
            assert client.stdout.readline().strip() == "half"
        finally:
            release.set()
        assert client.wait(timeout=60) == 0
        time.sleep(0.5)
    # the stop flushed the connections whose end was dropped too
    summary = run.summary
    assert summary["kernel_drops"] > 0, summary
    after = REGISTRY.get_sample_value("nodetap_packet_kernel_drops_total") or 0.0
    assert after - before == summary["kernel_drops"]
    assert summary["gaps"] > 0, summary
    flagged = [p for p in run.pairs if "gap" in p.flags]
    # a gap may swallow a request head (then the pair has no URL), so the flagged exchanges
    # are matched by connection: all of them belong to the slow client's one connection
    slow_ports = {p.client.port for p in run.pairs if p.http.req.url.startswith("/bytes/1000")}
    assert flagged and len(slow_ports) == 1
    assert all(p.client.port in slow_ports for p in flagged), [p.http.req.url for p in flagged]
    # after the stall, parsing resumed: later exchanges on the connection are whole
    whole = [p for p in run.pairs if p.http.req.url.startswith("/bytes/1000") and not p.flags]
    assert whole
    for p in whole:
        n = int(p.http.req.url.rsplit("/", 1)[1])
        assert p.http.res.body == bytes(i % 251 for i in range(n))


def test_loopback_shows_each_packet_once() -> None:
    with nginx() as ngx, packet_capture("lo", [ngx.port]) as run:
        for path in ("/hello", "/status/204", "/echo"):
            _curl("-o", "/dev/null", "--data-binary", "x" * 3000, f"{ngx.url}{path}")
        _wait(lambda: run.count() >= 3)
        time.sleep(0.3)
    assert sorted(p.http.req.url for p in run.pairs) == ["/echo", "/hello", "/status/204"]
    assert run.summary["duplicate_bytes"] == 0 and run.summary["gaps"] == 0
    # lo hands the socket every packet twice (sent, received): the filter keeps one
    assert run.summary["kernel_packets"] == run.summary["packets"]
    assert run.summary["filter_seen"] >= run.summary["filter_kept"] == run.summary["packets"]


def test_exchanges_as_json_lines() -> None:
    lines: list[str] = []
    with (
        nginx() as ngx,
        packet_capture("lo", [ngx.port], on_exchange=lambda c: lines.append(c.json_line())) as run,
    ):
        _curl("-o", "/dev/null", f"{ngx.url}/hello?j=1")
        _wait(lambda: len(lines) >= 1)
    assert run.pairs == []  # emit is not called when on_exchange is given
    (d,) = [json.loads(x) for x in lines]
    assert d["http"]["req"]["url"] == "/hello?j=1" and d["meta"]["source"] == "packet"
    assert base64.b64decode(d["http"]["res"]["body"]) == b"hello world\n"


def test_capture_command_packet_mode(tmp_path: Path) -> None:
    out = tmp_path / "pairs.jsonl"
    with nginx() as ngx:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "capture", "--mode", "packet", "--interface", "lo",
             "--port", str(ngx.port), "--count", "3", "-o", str(out)],
            cwd=REPO, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            deadline = time.monotonic() + 60
            while proc.poll() is None and time.monotonic() < deadline:
                _curl("-o", "/dev/null", f"{ngx.url}/hello?n=1")
                time.sleep(0.2)
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) >= 3
    for d in lines:
        assert d["direction"] == "NETWORK" and d["meta"]["source"] == "packet"
        assert d["http"]["req"]["url"] == "/hello?n=1"
        assert d["http"]["res"]["statusCode"] == 200
        assert d["server"]["port"] == ngx.port
