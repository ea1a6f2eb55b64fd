"""HTTP/2 through the live syscall capture (the Rust core decodes it): nghttp2's h2load and
curl against nghttpd (h2c prior knowledge), and curl --http2 against nginx over TLS (the
plaintext from the OpenSSL uprobes, agent/tls). Both sides of every exchange are compared
with what the peers sent and received: the files served and h2load's own count."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodetap.v1 import rrpair_pb2 as pb
from tests.support.capture import live_capture
from tests.support.nghttpd import BIG
from tests.support.nghttpd import INDEX as SMALL
from tests.support.nghttpd import nghttpd as serve_h2c
from tests.support.servers import free_port, nginx, wait_for_port
from tests.tls.tls_env import make_cert

pytestmark = [pytest.mark.bpf, pytest.mark.root]


@pytest.fixture
def nghttpd(tmp_path: Path) -> Iterator[int]:
    if shutil.which("nghttpd") is None or shutil.which("h2load") is None:
        pytest.fail("nghttp2-server / nghttp2-client missing (scripts/setup.sh installs them)")
    with serve_h2c(tmp_path) as port:
        yield port


def _h2(pairs: list[pb.RRPair], direction: int) -> list[pb.RRPair]:
    return [p for p in pairs if p.direction == direction and p.l7protocol == "http2"]


def test_h2c_live_both_sides(nghttpd: int) -> None:
    """100 requests (10 at once) on one h2load connection and a 300 KB body by curl: each
    stream one http2 RRPair on each side, bodies byte for byte."""
    with live_capture(ports=[nghttpd]) as lc:
        out = subprocess.run(
            ["h2load", "-n", "100", "-c", "1", "-m", "10",
             f"http://127.0.0.1:{nghttpd}/index.html"],
            capture_output=True, text=True, timeout=60, check=True,
        ).stdout  # fmt: skip
        assert "100 succeeded" in out, out
        subprocess.run(
            ["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null",
             f"http://127.0.0.1:{nghttpd}/big.bin"],
            check=True, timeout=60,
        )  # fmt: skip
        lc.wait_for(101, where=lambda p: p.direction == pb.INBOUND and p.l7protocol == "http2")
        lc.wait_for(101, where=lambda p: p.direction == pb.OUTBOUND and p.l7protocol == "http2")
        lc.settle()
    for direction in (pb.INBOUND, pb.OUTBOUND):
        got = _h2(lc.pairs, direction)
        assert len(got) == 101, [(p.http.req.url, list(p.flags)) for p in got]
        small = [p for p in got if p.http.req.url == "/index.html"]
        big = [p for p in got if p.http.req.url == "/big.bin"]
        assert len(small) == 100 and len(big) == 1
        for p in got:
            assert p.http.req.method == "GET" and p.http.res.status_code == 200, p
            assert not p.flags, list(p.flags)
        assert all(p.http.res.body == SMALL for p in small)
        assert big[0].http.res.body == BIG and big[0].http.res.body_size == len(BIG)


def test_h2_over_tls_live_both_sides(tmp_path: Path) -> None:
    """curl --http2 against nginx's http2 over TLS (Debian's OpenSSL 3): http2 RRPairs
    from the plaintext, meta.source "tls", on both sides."""
    cert = make_cert(tmp_path)
    port = free_port()
    extra = f"""
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {cert.cert};
        ssl_certificate_key {cert.key};
"""
    with nginx(extra=extra, files={"a.txt": SMALL, "big.bin": BIG}):
        wait_for_port("127.0.0.1", port)
        with live_capture(ports=[port]) as lc:
            url = f"https://127.0.0.1:{port}"
            subprocess.run(
                ["curl", "-sS", "--fail", "--http2", "--cacert", str(cert.cert),
                 f"{url}/a.txt", "-o", "/dev/null", f"{url}/big.bin", "-o", "/dev/null"],
                check=True, timeout=60,
            )  # fmt: skip
            lc.wait_for(2, where=lambda p: p.direction == pb.INBOUND and p.l7protocol == "http2")
            lc.wait_for(2, where=lambda p: p.direction == pb.OUTBOUND and p.l7protocol == "http2")
            lc.settle()
    for direction in (pb.INBOUND, pb.OUTBOUND):
        got = sorted(_h2(lc.pairs, direction), key=lambda p: p.http.req.url)
        assert [p.http.req.url for p in got] == ["/a.txt", "/big.bin"]
        assert [p.http.res.body for p in got] == [SMALL, BIG]
        for p in got:
            assert p.meta.source == "tls" and p.http.res.status_code == 200 and not p.flags
