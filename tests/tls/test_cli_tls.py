"""`nodetap capture` with TLS (issue 21): plaintext RRPairs with meta.source "tls" in its
JSONL, the coverage per process on stderr at exit, in `nodetap status` and in Prometheus
(nodetap_tls_processes{library,state}); --no-tls leaves the libraries alone."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from google.protobuf import json_format

from nodetap.v1 import rrpair_pb2 as pb
from tests.support.servers import free_port
from tests.tls.tls_env import Cert, TlsNginx, curl

pytestmark = [pytest.mark.bpf, pytest.mark.root]

REPO = Path(__file__).resolve().parents[2]


def _until(fn: object, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while True:
        got = fn()  # type: ignore[operator]
        if got:
            return str(got)
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.2)


def _get(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return str(r.read().decode())
    except OSError:
        return ""


def _capture(tmp_path: Path, site: TlsNginx, *extra: str) -> tuple[subprocess.Popen[bytes], str]:
    addr = f"127.0.0.1:{free_port()}"
    cmd = [sys.executable, "-m", "cli", "capture", "--port", str(site.tls_port),
           "--duration", "10", "--metrics-addr", addr,
           "-o", str(tmp_path / "out.jsonl"), *extra]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    line = proc.stderr.readline().decode()
    assert line.startswith("nodetap: capturing"), line + proc.stderr.read().decode()
    return proc, addr


def test_cli_capture_reports_and_captures_tls(tmp_path: Path, site: TlsNginx, cert: Cert) -> None:
    proc, addr = _capture(tmp_path, site)
    try:
        pids = site.pids()

        def hooked() -> bool:
            doc = json.loads(_get(f"http://{addr}/status") or "{}")
            rows = [r for r in doc.get("tls", []) if r["pid"] in pids]
            return {r["pid"] for r in rows} == pids and all(r["state"] == "hooked" for r in rows)

        _until(hooked)
        curl(site.tls_port, cert, ["/a.txt", "/hello"])
        metrics = _until(
            lambda: "nodetap_tls_processes" in (m := _get(f"http://{addr}/metrics")) and m
        )
        status = subprocess.run(
            [sys.executable, "-m", "cli", "status", "--url", f"http://{addr}"],
            cwd=REPO, capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
    assert proc.returncode == 0, err.decode()
    # nginx's master and worker, and curl while it lives (started after the capture, it is
    # picked up through the exec tracepoint)
    hooked_n = re.search(
        r'nodetap_tls_processes\{library="openssl",state="hooked"\} (\d+)', metrics
    )
    assert hooked_n is not None and int(hooked_n.group(1)) in (2, 3), metrics
    assert "TLS" in status.stdout and "libssl.so.3" in status.stdout, status.stdout
    lines = err.decode().splitlines()
    for pid in pids:
        assert any(
            ln.startswith(f"nodetap: TLS pid {pid} (nginx): openssl hooked: ") for ln in lines
        ), lines
    pairs = [json_format.Parse(x, pb.RRPair()) for x in (tmp_path / "out.jsonl").open()]
    assert sorted((p.direction, p.http.req.url, p.meta.source) for p in pairs) == [
        (pb.INBOUND, "/a.txt", "tls"),
        (pb.INBOUND, "/hello", "tls"),
        (pb.OUTBOUND, "/a.txt", "tls"),
        (pb.OUTBOUND, "/hello", "tls"),
    ]


def test_cli_no_tls_leaves_libraries_alone(tmp_path: Path, site: TlsNginx, cert: Cert) -> None:
    proc, addr = _capture(tmp_path, site, "--no-tls", "--duration", "4")
    try:
        curl(site.tls_port, cert, ["/a.txt"])
        metrics = _until(lambda: _get(f"http://{addr}/metrics"))
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)
    assert proc.returncode == 0, err.decode()
    assert "nodetap_tls_processes" not in metrics
    assert "nodetap: TLS" not in err.decode()
    assert (tmp_path / "out.jsonl").read_text() == ""  # ciphertext is not HTTP
