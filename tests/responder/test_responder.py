"""`nodetap responder` against real clients (curl, http.client), serving exchanges recorded
from real servers (nginx, a Python echo service)."""

from __future__ import annotations

import http.client
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.replay.helpers import Req, record
from tests.support.servers import free_port, nginx, python_server_process, wait_for_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def capture(tmp_path: Path) -> Iterator[tuple[Path, int, int]]:
    """Recorded: GET /a.txt answered 'one' then 'two'; GET /q?x=1&y=2; POST /echo (JSON)."""
    parts = []
    batches: list[list[Req]] = [
        [("GET", "/a.txt", [], b"")],
        [("GET", "/a.txt", [], b""), ("GET", "/q?x=1&y=2", [], b"")],
    ]
    with nginx(files={"a.txt": b"one\n", "q": b"query\n"}) as ng, python_server_process() as py:
        for i, reqs in enumerate(batches):
            if i == 1:
                (ng.root / "www" / "a.txt").write_bytes(b"two\n")
            parts.append(tmp_path / f"n{i}.jsonl")
            record("127.0.0.1", ng.port, reqs, parts[-1])
        parts.append(tmp_path / "py.jsonl")
        body = json.dumps({"q": "abc", "requestId": "r-1"}).encode()
        record(
            "127.0.0.1",
            py.port,
            [("POST", "/echo", [("Content-Type", "application/json")], body)],
            parts[-1],
        )
        cap = tmp_path / "deps.jsonl"
        cap.write_text("".join(p.read_text() for p in parts))
        yield cap, ng.port, py.port


def _start(cap: Path, port: int, *extra: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "responder", str(cap),
         "--listen", f"127.0.0.1:{port}", *extra],
        cwd=ROOT, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    wait_for_port("127.0.0.1", port)
    return proc


def _curl(url: str) -> tuple[int, bytes]:
    r = subprocess.run(
        ["curl", "-sS", "-w", "\n%{http_code}", url], capture_output=True, check=True, timeout=30
    )
    body, _, code = r.stdout.rpartition(b"\n")
    return int(code), body


def test_responder_serves_recorded_answers(capture: tuple[Path, int, int], tmp_path: Path) -> None:
    cap, ng_port, py_port = capture
    port = free_port()
    report = tmp_path / "rep.json"
    proc = _start(cap, port, "--ignore-json-path", "$..requestId", "--report", str(report))
    try:
        base = f"http://127.0.0.1:{port}"
        # identical requests: the recorded answers in recorded order, then the last again
        assert _curl(base + "/a.txt") == (200, b"one\n")
        assert _curl(base + "/a.txt") == (200, b"two\n")
        assert _curl(base + "/a.txt") == (200, b"two\n")
        # keep-alive, query parameters in another order, other headers: still a match
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/q?y=2&x=1", headers={"X-Noise": "zzz", "User-Agent": "other"})
        r = conn.getresponse()
        assert (r.status, r.read()) == (200, b"query\n")
        # JSON body: the ignored path differs, the rest matches (the echo service's answer)
        body = json.dumps({"requestId": "r-2", "q": "abc"}).encode()
        conn.request("POST", "/echo", body=body, headers={"Content-Type": "application/json"})
        r = conn.getresponse()
        assert r.status == 200 and json.loads(r.read()) == {"q": "abc", "requestId": "r-1"}
        # a body the recording never saw: 404, on the same connection
        conn.request("POST", "/echo", body=b'{"q": "xyz"}')
        r = conn.getresponse()
        text = r.read().decode()
        assert r.status == 404 and r.getheader("X-Nodetap-Mock") == "unmatched"
        assert "no recorded exchange matches POST /echo" in text
        conn.close()
        code, text_b = _curl(base + "/never?a=1")
        assert code == 404 and b"no recorded exchange matches GET /never?a=1" in text_b
        assert b"recorded: GET /a.txt, GET /q?x=1&y=2, POST /echo" in text_b
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=15)
    assert proc.returncode == 0, err
    rep = json.loads(report.read_text())
    assert rep["recorded"] == 4 and rep["served"] == 5 and rep["unmatched"] == 2
    assert rep["by_dependency"][f"127.0.0.1:{ng_port}"]["recorded"] == 3
    assert rep["by_dependency"][f"127.0.0.1:{py_port}"]["recorded"] == 1
    assert rep["by_dependency"][f"127.0.0.1:{port}"]["unmatched"] == 2  # by Host: no DNAT here
    assert f"responder: 127.0.0.1:{port}: 5 served, 2 unmatched" in err


def test_responder_errors(capture: tuple[Path, int, int]) -> None:
    cap, _, _ = capture
    r = subprocess.run(
        [sys.executable, "-m", "cli", "responder", str(cap), "--listen", "nope:x"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2 and "--listen 'nope:x': give HOST:PORT" in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "cli", "responder", str(cap), "--listen", "127.0.0.1:0",
         "--direction", "inbound"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 2 and "holds no complete inbound HTTP exchange" in r.stderr
