"""`nodetap responder` switching an HTTP/1.1 request with `Upgrade: h2c` + HTTP2-Settings to
HTTP/2 (101, then the answer on stream 1, later requests on new streams), with curl --http2
(which asks for h2c that way) as the client; exchanges recorded from Debian's nginx."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from tests.replay.helpers import Req, record
from tests.support.servers import free_port, nginx, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
BIG = bytes(range(256)) * 1024  # 256 KiB: many DATA frames, flow control


def test_curl_http2_upgrade_is_answered_over_h2(tmp_path: Path) -> None:
    cap = tmp_path / "deps.jsonl"
    with nginx(files={"a.txt": b"one\n", "big.bin": BIG}) as ng:
        reqs: list[Req] = [("GET", "/a.txt", [], b""), ("GET", "/big.bin", [], b"")]
        assert record("127.0.0.1", ng.port, reqs, cap) == 2
    port = free_port()
    report = tmp_path / "rep.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "responder", str(cap), "--listen", f"127.0.0.1:{port}",
         "--direction", "any", "--report", str(report)],
        cwd=ROOT, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port)
        url = f"http://127.0.0.1:{port}"
        out = subprocess.run(
            ["curl", "-sS", "--fail", "--http2", "-v", "-o", str(tmp_path / "a"),
             "-w", "%{http_version}\\n", f"{url}/a.txt", "-o", str(tmp_path / "b"),
             "-w", "%{http_version}\\n", f"{url}/big.bin"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        assert "HTTP/1.1 101" in out.stderr and "Upgrade: h2c" in out.stderr, out.stderr
        assert out.stdout.split() == ["2", "2"], out.stdout  # both answered over HTTP/2
        assert (tmp_path / "a").read_bytes() == b"one\n"
        assert (tmp_path / "b").read_bytes() == BIG
        # a client that does not ask for h2c is still answered over HTTP/1.1
        plain = subprocess.run(
            ["curl", "-sS", "--fail", "--http1.1", "-w", "\\n%{http_version}", f"{url}/a.txt"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert plain.stdout == "one\n\n1.1", plain
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=15)
    assert proc.returncode == 0, stderr
    rep = json.loads(report.read_text())
    assert rep["served"] == 3 and rep["unmatched"] == 0, rep
