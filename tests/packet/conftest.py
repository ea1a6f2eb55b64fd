"""Captures of real traffic shared by the packet tests (made once per session)."""

from __future__ import annotations

import http.client
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.packet.support import kernel_drops, tcpdump
from tests.support.servers import nginx, python_server_process

BIG = os.urandom(300_000)
UPLOAD = os.urandom(200_000)
WRK_REQUESTS = 300
CAPTURE_ATTEMPTS = 3


@dataclass
class LoCapture:
    """The same traffic captured three ways, and what the servers were."""

    eth: Path  # tcpdump -i lo (Ethernet)
    sll2: Path  # tcpdump -i any (Linux cooked v2)
    sll: Path  # tcpdump -i any -y LINUX_SLL
    nginx_port: int
    py_port: int


def _traffic(nginx_url: str, py_port: int, tmp: Path) -> None:
    upload = tmp / "upload.bin"
    upload.write_bytes(UPLOAD)

    def curl(*args: str) -> None:
        urls = [a for a in args if a.startswith("http://")]
        opts = [a for a in args if not a.startswith("http://")]
        argv = ["curl", "-s", "--max-time", "20", *opts]
        for url in urls:  # one keep-alive connection for all the URLs of one call
            argv += ["-o", "/dev/null", url]
        subprocess.run(argv, check=True)

    curl(f"{nginx_url}/hello", f"{nginx_url}/big.bin", f"{nginx_url}/status/204")
    curl("--data-binary", f"@{upload}", f"{nginx_url}/echo?x=1")
    curl("-H", "X-Test: a b", f"{nginx_url}/missing")
    py = f"http://127.0.0.1:{py_port}"
    curl("--data-binary", f"@{upload}", f"{py}/upload")
    curl(f"{py}/chunked/7", f"{py}/status/404")
    # A Python client on one keep-alive connection: bodies both ways, chunked, HEAD.
    conn = http.client.HTTPConnection("127.0.0.1", py_port, timeout=20)
    try:
        for method, path, body in (
            ("GET", "/bytes/150000", None),
            ("POST", "/echo", b"x" * 5000),
            ("GET", "/chunked/30", None),
            ("HEAD", "/bytes/10", None),
            ("PUT", "/echo", b"put-body"),
        ):
            conn.request(method, path, body=body, headers={"X-Client": "py"})
            conn.getresponse().read()
    finally:
        conn.close()
    # wrk: many small exchanges on two connections, stopped after WRK_REQUESTS responses.
    script = tmp / "stop.lua"
    script.write_text(
        "local n = 0\n"
        "function response(status, headers, body)\n"
        f"  n = n + 1; if n >= {WRK_REQUESTS} then wrk.thread:stop() end\n"
        "end\n"
    )
    subprocess.run(
        ["wrk", "-c", "2", "-t", "1", "-d", "1s", "-s", str(script), f"{nginx_url}/hello"],
        check=True,
        capture_output=True,
        timeout=30,
    )


@pytest.fixture(scope="session")
def lo_capture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LoCapture]:
    with nginx(files={"big.bin": BIG}) as ngx, python_server_process() as py:
        ngx.root.chmod(0o755)  # nginx workers run as nobody
        filt = f"tcp port {ngx.port} or tcp port {py.port}"
        # The tests compare the three captures with each other: a packet the kernel dropped
        # for one tcpdump (a loaded machine) would show as a difference nodetap did not make,
        # so the traffic is captured again, a bounded number of times.
        for attempt in range(1, CAPTURE_ATTEMPTS + 1):
            tmp = tmp_path_factory.mktemp("lo-capture")
            eth, sll2, sll = tmp / "lo.pcap", tmp / "any.pcap", tmp / "any-sll.pcap"
            with (
                tcpdump(eth, "lo", filt),
                tcpdump(sll2, "any", filt),
                tcpdump(sll, "any", filt, extra=("-y", "LINUX_SLL")),
            ):
                _traffic(ngx.url, py.port, tmp)
            drops = {p.name: kernel_drops(p) for p in (eth, sll2, sll)}
            if not any(drops.values()):
                break
            assert attempt < CAPTURE_ATTEMPTS, f"tcpdump lost packets in every attempt: {drops}"
        yield LoCapture(eth, sll2, sll, ngx.port, py.port)
