"""Replay of HTTP/2 and gRPC: a session recorded by the live capture (the Rust core decodes
it) from real peers, replayed by `nodetap replay` against a fresh server (zero mismatches)
and against one whose answer changed (the mismatch reported with the message or body).
Peers: grpcio's server and client (tests/support/peers/grpc_echo.py), nghttp2's nghttpd with
curl --http2-prior-knowledge, nginx's http2 over TLS with curl --http2."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from nodetap import jsonl
from nodetap.v1 import rrpair_pb2 as pb
from tests.support.capture import live_capture
from tests.support.nghttpd import BIG
from tests.support.nghttpd import INDEX as SMALL
from tests.support.nghttpd import nghttpd as serve_h2c
from tests.support.peers import go_grpc, grpc_echo
from tests.support.servers import free_port, nginx, wait_for_port
from tests.tls.tls_env import make_cert

pytestmark = [pytest.mark.bpf, pytest.mark.root]
ROOT = Path(__file__).resolve().parents[2]
PATH = f"/{grpc_echo.SERVICE}/"


def _record(tmp: Path, port: int, run: Any, proto: str, n: int) -> Path:
    """The pairs of l7protocol `proto` of run() on port, both sides, as a JSONL capture."""
    with live_capture(ports=[port]) as lc:
        assert run() == n
        for d in (pb.INBOUND, pb.OUTBOUND):

            def want(p: pb.RRPair, d: int = d) -> bool:
                return p.direction == d and p.l7protocol == proto

            lc.wait_for(n, where=want)
        lc.settle()
    cap = tmp / f"{proto}.jsonl"
    with cap.open("w") as f:
        for p in lc.pairs:
            if p.l7protocol == proto:
                jsonl.write(f, p)
    return cap


def _replay(cap: Path, target: str, *extra: str) -> dict[str, Any]:
    report = cap.parent / "report.json"
    out = subprocess.run(
        [sys.executable, "-m", "cli", "replay", str(cap), "--target", target,
         "--no-progress", "--processes", "1", "--vusers", "4", "--report", str(report), *extra],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    r: dict[str, Any] = json.loads(report.read_text())
    return r


@pytest.fixture(scope="module")
def grpc_capture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """grpc_echo.calls(): six calls from a grpcio client process to a grpcio server process
    (the capture leaves out the test's own process)."""
    tmp = tmp_path_factory.mktemp("grpc")
    with grpc_echo.serving_process() as port:
        yield _record(tmp, port, lambda: grpc_echo.calls_process(port), "grpc", 6)


def test_grpc_replay_against_a_fresh_server_matches(grpc_capture: Path) -> None:
    """unary, server-, client-streaming, bidi and an error status (NOT_FOUND with its message),
    replayed through grpcio's generic calls: every message byte for byte, zero mismatches."""
    server, port = grpc_echo.serve()
    try:
        r = _replay(grpc_capture, f"http://127.0.0.1:{port}")
    finally:
        server.stop(0)
    assert r["requests"]["sent"] == 6 and r["errors"]["total"] == 0, r["errors"]
    assert r["comparison"]["compared"] == 6
    assert r["comparison"]["mismatched"] == 0, r["comparison"]["samples"]


def test_grpc_replay_against_grpc_go_matches(grpc_capture: Path) -> None:
    """The grpcio session replayed against grpc-go's server of the same service (the most
    common gRPC stack in Kubernetes): the same messages and statuses, zero mismatches."""
    with go_grpc.grpc_server() as port:
        r = _replay(grpc_capture, f"http://127.0.0.1:{port}")
    assert r["requests"]["sent"] == 6 and r["errors"]["total"] == 0, r["errors"]
    assert r["comparison"]["compared"] == 6
    assert r["comparison"]["mismatched"] == 0, r["comparison"]["samples"]


def test_grpc_replay_over_tls(grpc_capture: Path, tmp_path: Path) -> None:
    """The same calls to grpcio's server over TLS (an https:// target, --target-ca)."""
    cert = make_cert(tmp_path)
    creds = grpc.ssl_server_credentials([(cert.key.read_bytes(), cert.cert.read_bytes())])
    server, port = grpc_echo.serve(credentials=creds)
    try:
        r = _replay(grpc_capture, f"https://127.0.0.1:{port}", "--target-ca", str(cert.cert))
    finally:
        server.stop(0)
    assert r["errors"]["total"] == 0 and r["comparison"]["compared"] == 6, r["errors"]
    assert r["comparison"]["mismatched"] == 0, r["comparison"]["samples"]


def test_grpc_replay_reports_a_changed_answer(grpc_capture: Path) -> None:
    """A server whose Unary answer changed: both Unary calls mismatch, naming the message
    (the 200 KB one was cut to --max-body in the recording: what was kept is compared)."""
    server, port = grpc_echo.serve(unary=lambda b, ctx: b"!" + b[::-1])
    try:
        r = _replay(grpc_capture, f"http://127.0.0.1:{port}")
    finally:
        server.stop(0)
    c = r["comparison"]
    assert r["errors"]["total"] == 0 and c["compared"] == 6 and c["mismatched"] == 2, c
    diffs = [d for s in c["samples"] for d in s["diffs"]]
    assert all(d.startswith("message 0: differs, first at byte 0") for d in diffs), diffs
    assert c["by_kind"] == {"message": 2}
    assert {s["target"] for s in c["samples"]} == {PATH + "Unary"}


def test_grpc_replay_of_a_refused_target_counts_errors(grpc_capture: Path) -> None:
    server, port = grpc_echo.serve()
    server.stop(0)
    r = _replay(grpc_capture, f"http://127.0.0.1:{port}", "--timeout", "5s")
    assert r["errors"]["total"] == 6 and r["comparison"]["compared"] == 0, r["errors"]


@pytest.fixture
def h2c_capture(tmp_path: Path) -> Iterator[Path]:
    if shutil.which("nghttpd") is None:
        pytest.fail("nghttp2-server missing (scripts/setup.sh installs it)")

    def run(port: int) -> int:
        for extra in (["/index.html"], ["/big.bin"], ["/index.html", "-I"]):
            subprocess.run(
                ["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null",
                 f"http://127.0.0.1:{port}{extra[0]}", *extra[1:]],
                check=True, timeout=60,
            )  # fmt: skip
        return 3

    (tmp_path / "rec").mkdir()
    with serve_h2c(tmp_path / "rec") as port:
        yield _record(tmp_path, port, lambda: run(port), "http2", 3)


def test_h2c_replay_against_nghttpd(h2c_capture: Path, tmp_path: Path) -> None:
    """curl's h2c requests (a page, a 300 KB file, a HEAD) replayed with prior knowledge
    against a fresh nghttpd: zero mismatches; against one whose page changed: the body."""
    (tmp_path / "fresh").mkdir()
    with serve_h2c(tmp_path / "fresh") as port:
        r = _replay(h2c_capture, f"http://127.0.0.1:{port}")
    assert r["errors"]["total"] == 0 and r["requests"]["statuses"] == {"200": 3}
    assert r["comparison"]["compared"] == 3
    assert r["comparison"]["mismatched"] == 0, r["comparison"]["samples"]
    (tmp_path / "changed").mkdir()
    with serve_h2c(tmp_path / "changed") as port:
        (tmp_path / "changed" / "www" / "index.html").write_bytes(b"<h1>changed</h1>\n")
        r = _replay(h2c_capture, f"http://127.0.0.1:{port}")
    c = r["comparison"]
    assert c["mismatched"] == 1 and c["samples"][0]["target"] == "/index.html", c
    assert any(d.startswith("body: differs") for s in c["samples"] for d in s["diffs"]), c


def test_h2_over_tls_replay_against_nginx(tmp_path: Path) -> None:
    """curl --http2 against nginx's http2 over TLS, recorded from the TLS plaintext, replayed
    to https:// (h2 by ALPN, the certificate checked with --target-ca): zero mismatches."""
    cert = make_cert(tmp_path)
    port = free_port()
    extra = f"""
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {cert.cert};
        ssl_certificate_key {cert.key};
"""
    url = f"https://127.0.0.1:{port}"

    def run() -> int:
        subprocess.run(
            ["curl", "-sS", "--fail", "--http2", "--cacert", str(cert.cert),
             f"{url}/a.txt", "-o", "/dev/null", f"{url}/big.bin", "-o", "/dev/null"],
            check=True, timeout=60,
        )  # fmt: skip
        return 2

    with nginx(extra=extra, files={"a.txt": SMALL, "big.bin": BIG}):
        wait_for_port("127.0.0.1", port)
        cap = _record(tmp_path, port, run, "http2", 2)
        r = _replay(cap, url, "--target-ca", str(cert.cert))
    assert r["errors"]["total"] == 0 and r["requests"]["statuses"] == {"200": 2}, r["errors"]
    assert r["comparison"]["compared"] == 2
    assert r["comparison"]["mismatched"] == 0, r["comparison"]["samples"]
