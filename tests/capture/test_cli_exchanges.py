"""`nodetap capture` end to end: the JSONL it writes (straight from the parsed exchanges,
without building protobuf messages) parses as RRPairs equal to what real clients sent and
read, on both sides."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from google.protobuf import json_format

from nodetap.v1 import rrpair_pb2 as pb
from tests.capture.clients import Request, curl
from tests.capture.expect import assert_agree, assert_curl_exchange, assert_request, assert_response
from tests.capture.py_clients import py_http
from tests.support.servers import nginx, python_server_process

pytestmark = [pytest.mark.bpf, pytest.mark.root]

REPO = Path(__file__).resolve().parents[2]


@contextmanager
def cli_capture(*args: str, decoder: str = "core") -> Iterator[subprocess.Popen[bytes]]:
    """`nodetap capture ARGS` as a process; yields once it says it is capturing. decoder:
    python runs the Python record loop (NODETAP_DECODER; the command line has no flag)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "capture", *args],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "NODETAP_DECODER": decoder},
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline().decode()
        assert line.startswith("nodetap: capturing"), line + proc.stderr.read().decode()
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
        proc.wait(timeout=30)


def by_port(pairs: list[pb.RRPair], port: int) -> tuple[list[pb.RRPair], list[pb.RRPair]]:
    mine = [p for p in pairs if p.client.port == port]
    inb = [p for p in mine if p.direction == pb.INBOUND]
    out = [p for p in mine if p.direction == pb.OUTBOUND]
    assert len(inb) == len(out)
    for i, o in zip(inb, out, strict=True):
        assert_agree(i, o, [])
    return inb, out


@pytest.mark.parametrize("decoder", ["python", "core"])
def test_capture_cli_jsonl_exact(tmp_path: Path, decoder: str) -> None:
    """Both decoders (NODETAP_DECODER: the Python record loop, the Rust core) write the same
    exact exchanges."""
    path = tmp_path / "capture.jsonl"
    body = bytes(range(256)) * 400
    with nginx() as ngx, python_server_process() as py:
        host = f"127.0.0.1:{py.port}"
        reqs = [
            Request(
                "POST", "/cli/post", [("Host", host), ("Content-Length", str(len(body)))], body
            ),
            Request("GET", "/chunked/3", [("Host", host)]),
            Request("GET", "/status/204", [("Host", host)]),
            Request("HEAD", "/bytes/10", [("Host", host), ("X-Obs-Text", "\xe9t\xe9")]),
        ]
        n = 2 * (2 + len(reqs))  # both sides of every exchange
        args = ["--port", f"{ngx.port},{py.port}", "--count", str(n), "--duration", "60"]
        with cli_capture(*args, "-o", str(path), decoder=decoder) as proc:
            crun = curl(ngx.url + "/hello?cli=1", ngx.url + "/echo", "--data-binary", "x=1")
            prun = py_http("127.0.0.1", py.port, reqs)
            _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
    summary = err.decode()
    assert "rrpairs" in summary.lower()
    pairs = [json_format.Parse(line, pb.RRPair()) for line in path.read_text().splitlines()]
    assert len(pairs) == n
    inb, out = by_port(pairs, crun.local_ports[0])
    assert len(inb) == 2
    assert_curl_exchange(inb[0], crun.exchanges[0], b"x=1", b"hello world\n")
    assert_curl_exchange(inb[1], crun.exchanges[1], b"x=1", b"echo\n")
    assert inb[0].meta.comm == "nginx" and out[0].meta.comm == "curl"
    inb, out = by_port(pairs, prun.local_port)
    assert len(inb) == len(reqs)
    for p, req, res in zip(inb, reqs, prun.responses, strict=True):
        assert_request(p, req.method, req.url, req.headers, req.body)
        assert_response(p, res)
    assert [(t.name, t.value) for t in inb[1].http.res.trailers] == [("X-Trailer", "done")]
    assert inb[0].meta.pid == py.pid
    assert {p.meta.source for p in pairs} == {"syscall"}
    assert len({p.id for p in pairs}) == n
