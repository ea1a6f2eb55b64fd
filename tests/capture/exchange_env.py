"""The shared setup of the live-capture exchange tests (tests/capture/test_exchanges.py,
test_connections.py, test_framing.py): the servers' files, the ``Env`` the module-scoped
``env`` fixture (tests/capture/conftest.py) gives, and checks on both sides of a connection."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from nodetap.v1 import rrpair_pb2 as pb
from tests.capture.clients import Headers, PyRun, Request
from tests.capture.expect import (
    LOSS_COUNTERS,
    assert_agree,
    assert_request,
    assert_response,
)
from tests.support.capture import LiveCapture
from tests.support.servers import Nginx, PyServer

REPO = Path(__file__).resolve().parents[2]

MIB = 1 << 20
_rng = random.Random(2)
BIG = _rng.randbytes(MIB)  # 1 MiB, exactly the default body limit
HUGE = _rng.randbytes(8 * MIB)  # more than loopback socket buffers hold
STATIC = b"a static file\n"
STATIC_MTIME = 1_700_000_000
TEXT = b"".join(b"line %d of a compressible text\n" % i for i in range(3000))
EXTRA = """
        location = /static.txt { }
        location /small { client_max_body_size 1k; return 200 "small\n"; }
        location /gz/ {
            gzip on;
            gzip_http_version 1.0;
            gzip_min_length 0;
            gzip_types *;
        }
"""
PROXY = """
        location /proxy/ {
            proxy_pass http://127.0.0.1:PYPORT/;
        }
"""


# bodies in the Python server's /chunked/N replies
def chunked_body(n: int) -> bytes:
    return b"".join(f"chunk-{i}\n".encode() for i in range(n))


@dataclass
class Env:
    ngx: Nginx
    py: PyServer
    lc: LiveCapture
    # ids of the RRPairs captured before the current test: the kernel reuses client ports
    # across the module's tests, so a port names one connection only within a test
    before: set[str] = field(default_factory=set)


# ---- helpers ---------------------------------------------------------------------------------


def assert_no_loss(lc: LiveCapture) -> None:
    s = lc.cap.summary()
    lost = {k: s[k] for k in LOSS_COUNTERS if s[k]}
    assert not lost, f"capture lost data: {lost}"


def both_sides(
    where: Env | LiveCapture, client_port: int, n: int, flags: list[str] | None = None
) -> tuple[list[pb.RRPair], list[pb.RRPair]]:
    """The n exchanges of the connection from `client_port`, as (INBOUND, OUTBOUND) lists in
    request order; checks that both sides agree field by field."""
    lc = where.lc if isinstance(where, Env) else where
    got = lc.wait_for(2 * n, where=of_port(where, client_port))
    inb = [p for p in got if p.direction == pb.INBOUND]
    out = [p for p in got if p.direction == pb.OUTBOUND]
    assert (len(inb), len(out)) == (n, n), [(p.direction, p.http.req.url) for p in got]
    for i, o in zip(inb, out, strict=True):
        assert_agree(i, o, flags or [])
    return inb, out


def assert_echoed_both_sides(env: Env, run: PyRun, reqs: list[Request]) -> None:
    """A Python client's requests to the echo server, each answered with its own body,
    captured exactly on both sides."""
    inb, out = both_sides(env, run.local_port, len(reqs))
    for p_in, p_out, req, res in zip(inb, out, reqs, run.responses, strict=True):
        assert res.body == req.body
        for p in (p_in, p_out):
            assert_request(p, req.method, req.url, req.headers, req.body)
            assert_response(p, res)


def of_port(where: Env | LiveCapture, client_port: int) -> Callable[[pb.RRPair], bool]:
    """RRPairs of the connection from `client_port` (in the shared capture: of this test)."""
    before = where.before if isinstance(where, Env) else set()
    return lambda p: p.client.port == client_port and p.id not in before


def req_bytes(method: str, url: str, headers: Headers, body: bytes = b"") -> bytes:
    head = f"{method} {url} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers)
    return head.encode() + b"\r\n" + body
