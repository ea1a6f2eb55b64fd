"""Issue 18: a Go net/http client against a Go net/http server, both captured.

The client (tests/support/peers/go_client.go) makes its requests in order on one
keep-alive connection: files the server sends with sendfile (1 KiB, 5 MiB, 100 KiB), a
1.5 MiB upload with a Content-Length (one large write), and a 300 KiB upload sent chunked.
Each exchange is compared on both sides (INBOUND in the server, OUTBOUND in the client)
with the server's own log (method, path, client port, request body bytes, status) and the
client's own account (status, body bytes, sha256, its local port).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from nodetap.v1 import rrpair_pb2 as pb
from tests.support.capture import live_capture
from tests.support.peers.go_http import go_client, go_log, go_servefile

pytestmark = [pytest.mark.bpf, pytest.mark.root, pytest.mark.slow]

FILES = {
    "1k.bin": os.urandom(1 << 10),
    "5m.bin": os.urandom(5 << 20),
    "100k.bin": os.urandom(100 << 10),
}
UPLOAD, CHUNKED = 1536 << 10, 300 << 10
# (method, path, request body bytes) of each exchange, in order on one connection
ROUTE = [
    ("GET", "/1k.bin", 0),
    ("GET", "/5m.bin", 0),
    ("POST", "/upload", UPLOAD),
    ("POST", "/upload", CHUNKED),
    ("GET", "/100k.bin", 0),
]


def pattern(n: int) -> bytes:
    return bytes(i % 251 for i in range(n))


def test_go_client_and_server_whole_on_both_sides(tmp_path: Path) -> None:
    for name, data in FILES.items():
        (tmp_path / name).write_bytes(data)
    log = tmp_path / "server.log"
    requests = [
        "GET /1k.bin",
        "GET /5m.bin",
        f"POST /upload {UPLOAD}",
        f"CHUNKED /upload {CHUNKED}",
        "GET /100k.bin",
    ]
    with (
        go_servefile(tmp_path, log) as port,
        live_capture(ports=[port], max_body=8 << 20) as lc,
    ):
        got = go_client(f"http://127.0.0.1:{port}", requests)
        lc.wait_for(2 * len(requests), timeout=60)
        lc.settle()
    answers = [FILES[p[1:]] if m == "GET" else b"got %d" % n for m, p, n in ROUTE]
    # the client's account: every answer whole, one connection
    assert [(a.status, a.size, a.sha256) for a in got] == [
        (200, len(b), hashlib.sha256(b).hexdigest()) for b in answers
    ]
    client_port = got[0].local_port
    assert {a.local_port for a in got} == {client_port}
    # the server's account
    assert go_log(log) == [(m, p, client_port, n, 200) for m, p, n in ROUTE]
    s = lc.cap.summary()
    for direction in (pb.INBOUND, pb.OUTBOUND):
        name = pb.Direction.Name(direction)
        pairs = sorted(
            (p for p in lc.pairs if p.direction == direction), key=lambda p: p.ts.ToNanoseconds()
        )
        assert [(p.http.req.method, p.http.req.url) for p in pairs] == [r[:2] for r in ROUTE], (
            name,
            s,
        )
        for p, answer, (_, _, n) in zip(pairs, answers, ROUTE, strict=True):
            where = (name, p.http.req.url, list(p.flags), s)
            assert not p.flags, where
            assert (p.client.port, p.server.port) == (client_port, port), where
            assert p.http.res.status_code == 200 and p.http.res.body == answer, where
            assert p.http.res.body_size == len(answer), where
            assert p.http.req.body_size == n and p.http.req.body == pattern(n), where
        te = [h.value for h in pairs[3].http.req.headers if h.name.lower() == "transfer-encoding"]
        assert te == ["chunked"], name  # the second upload went chunked
    assert s["stream_gaps"] == 0 and s["drop_sendfile_bytes"] == 0, s
