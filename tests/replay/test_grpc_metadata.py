"""gRPC metadata compared by replay like HTTP headers: the response's initial metadata and
trailers recorded by the live capture (the Rust core) from real grpcio processes, compared
with what grpcio's client reads from the replay target. grpc-status and grpc-message are the
call's status; transport fields (content-type, grpc-encoding) and volatile ones (date,
user-agent, grpc-accept-encoding) are not compared; --ignore-header applies."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nodetap import jsonl
from nodetap.v1 import rrpair_pb2 as pb
from tests.support.capture import live_capture
from tests.support.peers import grpc_echo, grpc_meta
from tests.support.peers.process import serving
from tests.support.servers import free_port

pytestmark = [pytest.mark.bpf, pytest.mark.root]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """grpc_echo.calls() (six calls, two of them Unary with metadata) between two grpcio
    processes, the server's side (INBOUND)."""
    tmp = tmp_path_factory.mktemp("meta")
    port = free_port()
    cmd = [sys.executable, "-m", "tests.support.peers.grpc_meta", "serve", str(port), "1", "abc"]
    with serving(cmd, port), live_capture(ports=[port]) as lc:
        assert grpc_echo.calls_process(port) == 6

        def want(p: pb.RRPair) -> bool:
            return p.l7protocol == "grpc" and p.direction == pb.INBOUND

        lc.wait_for(6, where=want)
        lc.settle()
    cap = tmp / "grpc.jsonl"
    with cap.open("w") as f:
        for p in lc.pairs:
            if want(p):
                jsonl.write(f, p)
    yield cap


def _replay(cap: Path, version: str | None, checksum: str, *extra: str) -> dict[str, Any]:
    server, port = grpc_meta.serve(version, checksum)
    report = cap.parent / "report.json"
    try:
        out = subprocess.run(
            [sys.executable, "-m", "cli", "replay", str(cap), "--target",
             f"http://127.0.0.1:{port}", "--no-progress", "--processes", "1",
             "--report", str(report), *extra],
            capture_output=True, text=True, cwd=ROOT, timeout=120,
        )  # fmt: skip
    finally:
        server.stop(0)
    assert out.returncode == 0, out.stderr
    r: dict[str, Any] = json.loads(report.read_text())
    assert r["errors"]["total"] == 0 and r["comparison"]["compared"] == 6, r["errors"]
    return r["comparison"]  # type: ignore[no-any-return]


def _diffs(c: dict[str, Any]) -> list[str]:
    return sorted(d for s in c["samples"] for d in s["diffs"])


def test_recorded_metadata_is_in_the_capture(capture: Path) -> None:
    """The recording holds what is compared: x-version in the headers, x-checksum and
    x-sum-bin in the trailers of the Unary calls."""
    pairs = [json.loads(line) for line in capture.read_text().splitlines()]
    unary = [p for p in pairs if p["http"]["req"]["url"].endswith("/Unary")]
    assert len(unary) == 2
    for p in unary:
        res = p["http"]["res"]
        assert {"name": "x-version", "value": "1"} in res["headers"]
        names = {h["name"]: h.get("value", "") for h in res["trailers"]}
        assert names["x-checksum"] == "abc" and "x-sum-bin" in names, res["trailers"]


def test_same_metadata_matches(capture: Path) -> None:
    """A fresh server sending the same metadata: zero mismatches (the -bin trailer compared
    as base64, padded or not; grpc-accept-encoding and the like not compared)."""
    c = _replay(capture, "1", "abc")
    assert c["mismatched"] == 0, _diffs(c)


def test_changed_trailer_is_reported_by_name(capture: Path) -> None:
    c = _replay(capture, "1", "abd")
    assert c["mismatched"] == 2 and c["by_kind"] == {"trailer": 2}, c
    assert _diffs(c) == ["trailer x-checksum: recorded 'abc', replayed 'abd'"] * 2


def test_missing_header_is_reported_and_ignore_header_applies(capture: Path) -> None:
    c = _replay(capture, None, "abd")
    assert c["mismatched"] == 2, c
    assert _diffs(c) == sorted(
        ["header x-version: missing (recorded '1')"] * 2
        + ["trailer x-checksum: recorded 'abc', replayed 'abd'"] * 2
    )
    c = _replay(
        capture, None, "abd", "--ignore-header", "x-version", "--ignore-header", "x-checksum"
    )
    assert c["mismatched"] == 0, _diffs(c)
