"""What the TLS tests share: a certificate made by the test (Debian's openssl), nginx serving
the same site in cleartext and over TLS, clients (curl, Python's ssl with keep-alive), and
RRPairs reduced to what must be identical between the cleartext and the TLS run."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from nodetap.v1 import rrpair_pb2 as pb
from tests.support.servers import Nginx, free_port, nginx

ROOT = Path(__file__).resolve().parents[2]
MIB = 1 << 20
BIG = bytes(range(256)) * (MIB // 256)  # 1 MiB, served by nginx (SSL_write in pieces)
UPLOAD = bytes(reversed(BIG))  # 1 MiB, posted by the Python client
FILES = {"a.txt": b"hello over tls\n", "big.bin": BIG}

# one server block: the same site on a cleartext port and a TLS port
TLS_EXTRA = """
        listen 127.0.0.1:{tls_port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_session_cache shared:nodetap:1m;
"""


@dataclass
class Cert:
    cert: Path
    key: Path


def make_cert(folder: Path) -> Cert:
    """A self-signed certificate for 127.0.0.1 and localhost, made with openssl."""
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
         "-keyout", str(key), "-out", str(cert), "-days", "2",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    cert.chmod(0o644)
    key.chmod(0o644)  # nginx workers run as nobody
    folder.chmod(0o755)
    return Cert(cert, key)


@dataclass
class TlsNginx:
    ngx: Nginx
    tls_port: int

    @property
    def plain_port(self) -> int:
        return self.ngx.port

    def pids(self) -> set[int]:
        return {self.ngx.proc.pid, *self.ngx.worker_pids}


@contextlib.contextmanager
def tls_nginx(cert: Cert, tls_port: int | None = None) -> Iterator[TlsNginx]:
    port = tls_port or free_port()
    extra = TLS_EXTRA.format(tls_port=port, cert=cert.cert, key=cert.key)
    with nginx(extra=extra, files=FILES) as ngx:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            time.sleep(0.05)
        yield TlsNginx(ngx, port)


def curl(port: int, cert: Cert | None, paths: list[str]) -> None:
    """GET every path on one keep-alive connection (one curl process); over TLS when a
    certificate to trust is given."""
    args = ["curl", "-sS", "--http1.1", "--fail"]
    if cert is not None:
        args += ["--cacert", str(cert.cert)]
    scheme = "https" if cert is not None else "http"
    for p in paths:
        args += [f"{scheme}://127.0.0.1:{port}{p}", "-o", "/dev/null"]
    subprocess.run(args, check=True, capture_output=True, timeout=60)


def python_client(what: str, port: int, cert: Cert | None) -> object:
    """Run a Python client of tests/tls/py_client.py in a process of its own (the test's
    process runs the capture, which never traces itself); returns what it printed (JSON)."""
    cmd = [sys.executable, "-m", "tests.tls.py_client", what, str(port)]
    if cert is not None:
        cmd.append(str(cert.cert))
    out = subprocess.run(cmd, check=True, capture_output=True, timeout=120, cwd=ROOT)
    return json.loads(out.stdout)


# headers that differ between two runs of the same request on two ports
_VARYING = {"host", "date"}


def essence(p: pb.RRPair) -> tuple[object, ...]:
    """What must be the same for the same request in cleartext and over TLS."""
    req, res = p.http.req, p.http.res

    def headers(hs: object) -> tuple[tuple[str, str], ...]:
        return tuple(
            (h.name.lower(), h.value)
            for h in hs  # type: ignore[attr-defined]
            if h.name.lower() not in _VARYING
        )

    return (
        p.direction,
        req.method,
        req.url,
        headers(req.headers),
        req.body_size,
        req.body,
        res.status_code,
        headers(res.headers),
        res.body_size,
        res.body,
        tuple(sorted(p.flags)),
    )
