"""gRPC over TLS (issue 21): grpc-go with TLS (Go's crypto/tls, built by the test with the
machine's Go) gives grpc RRPairs from both sides, every message exact; grpcio (whose
BoringSSL is linked into its extension module without symbols) is reported not hooked with
the reason, and its connections are counted as ciphertext, never parsed nor misattributed."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from agent.capture import SyscallCapture
from agent.tls.classify import Coverage
from nodetap.v1 import rrpair_pb2 as pb
from tests.core.test_h2_peers import assert_calls
from tests.support.capture import live_capture
from tests.support.peers import go_grpc
from tests.support.peers.process import serving
from tests.support.servers import free_port
from tests.tls.tls_env import Cert

pytestmark = [pytest.mark.bpf, pytest.mark.root]

ROOT = Path(__file__).resolve().parents[2]


def _wait_rows(
    cap: SyscallCapture, ok: Callable[[list[Coverage]], bool], timeout: float = 30
) -> list[Coverage]:
    assert cap.tls is not None
    deadline = time.monotonic() + timeout
    while True:
        rows = cap.tls.table()
        if ok(rows):
            return rows
        if time.monotonic() > deadline:
            raise AssertionError(f"coverage table: {rows}")
        time.sleep(0.1)


@pytest.mark.slow
def test_grpc_go_over_tls_both_sides_exact(cert: Cert) -> None:
    """grpc-go server and client over TLS: unary (100 B, 4 MiB, gzip), an error status with
    its message, server/client/bidi streaming, 40 calls multiplexed; one RRPair per call and
    side, l7protocol grpc, meta.source tls, messages byte for byte."""
    go_grpc.build()  # before the capture: the first build downloads modules
    tls = {"GO_GRPC_TLS_CERT": str(cert.cert), "GO_GRPC_TLS_KEY": str(cert.key)}
    with (
        go_grpc.grpc_server(env=tls) as port,
        live_capture(ports=[port], max_body=8 << 20, tls_rescan_interval=0.3) as lc,
    ):
        rows = _wait_rows(lc.cap, lambda rows: any(r.library == "go" for r in rows))
        # the client is the same executable (another mode): its file is probed already
        calls = go_grpc.client_calls(port, env={"GO_GRPC_TLS_CA": str(cert.cert)})
        pairs = lc.wait_for(2 * len(calls), timeout=60)
        lc.settle()
        summary = lc.cap.summary()
    assert len(calls) == 47
    (row,) = [r for r in rows if r.library == "go"]
    assert row.state == "hooked" and "crypto/tls (go1." in row.reason, row
    assert len(pairs) == 2 * len(calls), summary
    assert {(p.l7protocol, p.meta.source) for p in pairs} == {("grpc", "tls")}
    for direction in (pb.INBOUND, pb.OUTBOUND):
        assert_calls([p for p in pairs if p.direction == direction], calls, direction)
    assert sum(p.grpc.encoding == "gzip" for p in pairs) == 2
    assert summary["conns_not_http"] == 0 and summary["tls_cipher_bytes"] > 8 << 20, summary


def test_grpcio_over_tls_is_reported_not_hooked(cert: Cert) -> None:
    """grpcio's server and client over TLS: both processes are listed as grpcio not hooked
    with the reason; their ciphertext is counted, nothing is parsed or attributed."""
    port = free_port()
    mod = [sys.executable, "-m", "tests.tls.grpcio_tls"]
    serve = [*mod, "serve", str(port), str(cert.cert), str(cert.key)]
    with (
        serving(serve, port, cwd=ROOT) as srv,
        live_capture(ports=[port], tls_rescan_interval=0.3) as lc,
    ):
        _wait_rows(lc.cap, lambda rows: srv.pid in {r.pid for r in rows})
        cli = subprocess.Popen(
            [*mod, "call", str(port), str(cert.cert)], cwd=ROOT, stdout=subprocess.PIPE
        )
        try:
            out, _ = cli.communicate(timeout=60)
        finally:
            if cli.poll() is None:
                cli.kill()
                cli.wait()
        time.sleep(1)
        lc.settle()
        rows = {r.pid: r for r in lc.cap.tls.table()} if lc.cap.tls else {}
        summary = lc.cap.summary()
    assert json.loads(out) == ["cba", "slt olleh"]
    row = rows[srv.pid]
    assert (row.library, row.state) == ("grpcio", "not_hooked"), row
    assert "grpcio's BoringSSL is linked into cygrpc" in row.reason, row
    assert "without symbols" in row.reason, row
    assert lc.pairs == [], [(p.direction, p.l7protocol, p.meta.source) for p in lc.pairs]
    assert summary["tls_cipher_bytes"] > 0 and summary["conns_not_http"] == 0, summary
