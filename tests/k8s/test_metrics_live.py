"""Metrics scraped over HTTP during a real capture move with the traffic: `nodetap capture
--metrics-addr` against nginx, curl requests, /metrics before and after."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.support.servers import free_port, nginx

REPO = Path(__file__).resolve().parents[2]


def _scrape(base: str) -> dict[str, float]:
    with urllib.request.urlopen(base + "/metrics", timeout=5) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("nodetap_") and " " in line:
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


@pytest.mark.bpf
@pytest.mark.root
@pytest.mark.slow
def test_counters_move_during_a_real_capture(tmp_path: Path) -> None:
    with nginx(files={"hello.txt": b"hello\n"}) as web:
        mport = free_port()
        base = f"http://127.0.0.1:{mport}"
        cap = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cli",
                "capture",
                "--port",
                str(web.port),
                "--metrics-addr",
                f"127.0.0.1:{mport}",
                "--duration",
                "90",
                "-o",
                str(tmp_path / "pairs.jsonl"),
            ],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            deadline = time.monotonic() + 60
            before: dict[str, float] = {}
            while time.monotonic() < deadline:
                assert cap.poll() is None, cap.stderr.read() if cap.stderr else ""
                try:
                    before = _scrape(base)
                except (urllib.error.URLError, ConnectionError):
                    before = {}
                if 'nodetap_rrpairs_total{protocol="http"}' in before:
                    break
                time.sleep(0.2)
            assert before, "the capture never served its metrics"
            with urllib.request.urlopen(base + "/healthz", timeout=5) as r:
                assert r.status == 200
            n = 20
            for i in range(n):
                subprocess.run(
                    ["curl", "-s", "-o", "/dev/null", f"{web.url}/hello.txt?i={i}"],
                    check=True,
                    timeout=10,
                )
            key = 'nodetap_rrpairs_total{protocol="http"}'
            deadline = time.monotonic() + 20
            after = _scrape(base)
            while after[key] < before[key] + n and time.monotonic() < deadline:
                time.sleep(0.2)
                after = _scrape(base)
            assert after[key] >= before[key] + n
            data = 'nodetap_events_total{kind="data"}'
            assert after[data] > before[data]
            assert after["nodetap_captured_bytes_total"] > before["nodetap_captured_bytes_total"]
            # decoded at once: light traffic leaves no backlog in the ring
            assert 0 <= after["nodetap_ring_backlog_bytes"] < 1 << 20
        finally:
            cap.send_signal(signal.SIGINT)
            try:
                cap.wait(timeout=30)
            except subprocess.TimeoutExpired:
                cap.kill()
                cap.wait()
