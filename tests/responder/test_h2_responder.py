"""`nodetap responder` answering HTTP/2 and gRPC from a capture recorded by the live capture:
grpcio's client (every kind of call, an error status, an unmatched call -> UNIMPLEMENTED with
a message, counted) and curl --http2-prior-knowledge (h2c) on the same port as HTTP/1.x."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from nodetap import jsonl
from nodetap.v1 import rrpair_pb2 as pb
from tests.support.capture import live_capture
from tests.support.nghttpd import BIG, INDEX
from tests.support.nghttpd import nghttpd as serve_h2c
from tests.support.peers import grpc_echo
from tests.support.servers import free_port, wait_for_port

pytestmark = [pytest.mark.bpf, pytest.mark.root]
ROOT = Path(__file__).resolve().parents[2]
PATH = f"/{grpc_echo.SERVICE}/"


@pytest.fixture
def capture(tmp_path: Path) -> Iterator[Path]:
    """Six gRPC calls (grpc_echo.calls) between grpcio processes and two h2c GETs by curl to
    nghttpd, both sides."""
    if shutil.which("nghttpd") is None:
        pytest.fail("nghttp2-server missing (scripts/setup.sh installs it)")
    with (
        grpc_echo.serving_process() as gport,
        serve_h2c(tmp_path) as hport,
        live_capture(ports=[gport, hport]) as lc,
    ):
        grpc_echo.calls_process(gport)
        for path in ("/index.html", "/big.bin"):
            subprocess.run(
                ["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null",
                 f"http://127.0.0.1:{hport}{path}"],
                check=True, timeout=60,
            )  # fmt: skip
        lc.wait_for(6, where=lambda p: p.l7protocol == "grpc" and p.direction == pb.INBOUND)
        lc.wait_for(2, where=lambda p: p.l7protocol == "http2" and p.direction == pb.INBOUND)
        lc.settle()
    cap = tmp_path / "deps.jsonl"
    with cap.open("w") as f:
        for p in lc.pairs:
            jsonl.write(f, p)
    yield cap


def test_responder_answers_grpc_and_h2c(capture: Path, tmp_path: Path) -> None:
    port = free_port()
    report = tmp_path / "rep.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "responder", str(capture), "--listen", f"127.0.0.1:{port}",
         "--direction", "inbound", "--report", str(report)],
        cwd=ROOT, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port)
        assert grpc_echo.calls(port) == 6  # the real server's answers, from the recording
        with (
            grpc.insecure_channel(f"127.0.0.1:{port}", options=grpc_echo.OPTIONS) as ch,
            pytest.raises(grpc.RpcError) as e,
        ):
            ch.unary_unary(PATH + "Unary")(b"never recorded", timeout=30)
        err = e.value
        assert err.code() == grpc.StatusCode.UNIMPLEMENTED
        details = err.details()
        assert f"no recorded gRPC call matches {PATH}Unary with these 1 request" in details
        for path, want in (("/index.html", INDEX), ("/big.bin", BIG)):
            got = subprocess.run(
                ["curl", "-sS", "--fail", "--http2-prior-knowledge",
                 f"http://127.0.0.1:{port}{path}"],
                capture_output=True, check=True, timeout=30,
            ).stdout  # fmt: skip
            assert got == want
        # the same mocks over HTTP/1.1 on the same port
        got = subprocess.run(
            ["curl", "-sS", "--fail", f"http://127.0.0.1:{port}/index.html"],
            capture_output=True, check=True, timeout=30,
        ).stdout  # fmt: skip
        assert got == INDEX
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=15)
    assert proc.returncode == 0, stderr
    rep = json.loads(report.read_text())
    assert rep["recorded"] == 8 and rep["served"] == 9 and rep["unmatched"] == 1, rep
    assert any(f"POST {PATH}Unary" in s for s in rep["unmatched_samples"]), rep
