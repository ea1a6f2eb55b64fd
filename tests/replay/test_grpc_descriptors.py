"""--proto-descriptors (a FileDescriptorSet by grpcio-tools' protoc): gRPC messages recorded by
the live capture from real grpcio processes (tests/support/peers/grpc_users.py) rendered as
JSON by export (JSONL and HAR), and compared field by field by replay with ignore paths."""

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
from tests.support.peers import grpc_users
from tests.support.peers.process import serving
from tests.support.servers import free_port

pytestmark = [pytest.mark.bpf, pytest.mark.root]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(capture, descriptor set): Get("ann") and List("x"), the server's side."""
    tmp = tmp_path_factory.mktemp("desc")
    desc = grpc_users.descriptors(tmp / "users.pb")
    with grpc_users.serving_process(desc) as port, live_capture(ports=[port]) as lc:
        assert grpc_users.calls_process(port, desc) == 2
        lc.wait_for(2, where=lambda p: p.l7protocol == "grpc" and p.direction == pb.INBOUND)
        lc.settle()
    cap = tmp / "users.jsonl"
    with cap.open("w") as f:
        for p in lc.pairs:
            if p.l7protocol == "grpc" and p.direction == pb.INBOUND:
                jsonl.write(f, p)
    yield cap, desc


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def _replay(cap: Path, desc: Path, changed: bool, *extra: str) -> dict[str, Any]:
    port = free_port()
    cmd = [sys.executable, "-m", "tests.support.peers.grpc_users", "serve", str(port), str(desc)]
    report = cap.parent / "report.json"
    with serving([*cmd, "--changed"] if changed else cmd, port):
        r = _cli("replay", str(cap), "--target", f"http://127.0.0.1:{port}", "--no-progress",
                 "--processes", "1", "--report", str(report), *extra)  # fmt: skip
    assert r.returncode == 0, r.stderr
    out: dict[str, Any] = json.loads(report.read_text())
    assert out["errors"]["total"] == 0 and out["comparison"]["compared"] == 2, out
    return out


def test_replay_compares_messages_field_by_field(recorded: tuple[Path, Path]) -> None:
    cap, desc = recorded
    with_desc = ("--proto-descriptors", str(desc), "--ignore-json-path", "$.seen")
    # a fresh server: the time in `seen` differs, ignored by path: zero mismatches
    c0 = _replay(cap, desc, False, *with_desc)["comparison"]
    assert c0["mismatched"] == 0, [s.get("diffs") for s in c0["samples"]]
    # byte for byte (no descriptors) the same answers differ (the time)
    assert _replay(cap, desc, False)["comparison"]["mismatched"] == 2
    # a server whose ids changed: the field is named
    c = _replay(cap, desc, True, *with_desc)["comparison"]
    diffs = sorted(d for s in c["samples"] for d in s["diffs"])
    assert c["mismatched"] == 2 and c["by_kind"] == {"message": 3}, c
    assert diffs == [
        'message 0 $.id: recorded "1", replayed "2"',
        'message 0 $.id: recorded "7", replayed "8"',
        'message 1 $.id: recorded "2", replayed "3"',
    ]


def test_export_renders_messages(recorded: tuple[Path, Path], tmp_path: Path) -> None:
    cap, desc = recorded
    out = tmp_path / "users.jsonl"
    r = _cli("export", "-r", str(cap), "--proto-descriptors", str(desc), "-w", str(out))
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    by_method = {d["grpc"]["method"]: d["grpc"] for d in lines}
    assert by_method["Get"]["requestJson"] == [{"name": "ann"}]
    got = by_method["List"]["responseJson"]
    assert [(u["name"], u["id"], u["tags"]) for u in got] == [("x1", "1", ["a", "b"]),
                                                             ("x2", "2", ["a", "b"])]  # fmt: skip
    assert all(u["seen"].endswith("Z") for u in got)
    har = tmp_path / "users.har"
    r = _cli("export", "-r", str(cap), "--proto-descriptors", str(desc), "-w", str(har))
    assert r.returncode == 0, r.stderr
    entries = json.loads(har.read_text())["log"]["entries"]
    assert {e["request"]["httpVersion"] for e in entries} == {"HTTP/2"}
    assert {e["response"]["httpVersion"] for e in entries} == {"HTTP/2"}
    get = next(e for e in entries if e["request"]["url"].endswith("/test.users.Users/Get"))
    assert get["request"]["url"].startswith("http://127.0.0.1:")
    assert get["_nodetap"]["grpc"]["responseJson"][0]["name"] == "ann"
    assert get["_nodetap"]["grpc"]["service"] == "test.users.Users"
    r = _cli("export", "-r", str(cap), "--proto-descriptors", str(cap), "-w", str(har))
    assert r.returncode == 2 and "not a FileDescriptorSet" in r.stderr, r.stderr


def test_capture_output_renders_messages(recorded: tuple[Path, Path], tmp_path: Path) -> None:
    """`nodetap capture --proto-descriptors`: the JSONL written holds each gRPC message also
    as JSON, both sides of both calls."""
    _, desc = recorded
    out = tmp_path / "live.jsonl"
    with grpc_users.serving_process(desc) as port:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "capture", "--port", str(port), "--count", "4",
             "--duration", "60", "-w", str(out), "--proto-descriptors", str(desc)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            assert proc.stderr is not None
            line = proc.stderr.readline().decode()
            assert line.startswith("nodetap: capturing"), line + proc.stderr.read().decode()
            grpc_users.calls_process(port, desc)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=30)
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert len(lines) == 4 and all(d["l7protocol"] == "grpc" for d in lines)
    gets = [d["grpc"] for d in lines if d["grpc"]["method"] == "Get"]
    assert len(gets) == 2
    for g in gets:
        assert g["requestJson"] == [{"name": "ann"}]
        assert g["responseJson"][0]["id"] == "7" and g["responseJson"][0]["tags"] == ["a", "b"]
