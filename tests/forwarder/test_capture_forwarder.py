"""`nodetap capture --forwarder` on real nginx traffic: every exchange reaches the forwarder,
redacted by the edge rules before it leaves the capture process."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.forwarder.helpers import ROOT, forwarder_process, grep_dir, stop, stored
from tests.support.servers import free_port, nginx

pytestmark = [pytest.mark.bpf, pytest.mark.root, pytest.mark.slow]

SECRET = "capture-e2e-bearer-0a1b2c3d4e5f"


def test_capture_streams_redacted_pairs_to_the_forwarder(tmp_path: Path) -> None:
    n = 20
    rules = tmp_path / "rules.yaml"
    rules.write_text("drop:\n  - {name: no-favicon, path: ^/favicon}\n")
    data, spool = tmp_path / "data", tmp_path / "spool"
    port = free_port()
    with nginx() as web, forwarder_process(port, data):
        cap = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "nodetap",
                "capture",
                "--port",
                str(web.port),
                "--count",
                str(2 * n),
                "--forwarder",
                f"127.0.0.1:{port}",
                "--rules",
                str(rules),
                "--spool-dir",
                str(spool),
                "-o",
                str(tmp_path / "local.jsonl"),
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert cap.stderr is not None
            deadline = time.monotonic() + 60
            while "capturing with" not in (line := cap.stderr.readline()):
                assert line and time.monotonic() < deadline, "capture did not start"
            urls = [f"{web.url}/hello?i={i}" for i in range(n)]
            subprocess.run(
                [
                    "curl",
                    "-sS",
                    "-o",
                    "/dev/null",
                    "-H",
                    f"Authorization: Bearer {SECRET}",
                    *urls,
                    f"{web.url}/favicon.ico",
                ],
                check=True,
                timeout=60,
            )
            cap.wait(timeout=60)
            summary = cap.stderr.read()
        finally:
            stop(cap, signal.SIGINT)
        assert cap.returncode == 0, summary
        pairs = stored(data)
    assert len(pairs) == 2 * n  # inbound (nginx) and outbound (curl) of each request
    assert len({p.id for p in pairs}) == 2 * n
    assert all("redacted" in p.flags for p in pairs)
    assert all(not p.http.req.url.startswith("/favicon") for p in pairs)
    needles = [SECRET.encode()]
    assert (tmp_path / "local.jsonl").stat().st_size > 0
    assert grep_dir(data, needles) == {} and grep_dir(tmp_path / "local.jsonl", needles) == {}
    if spool.exists():
        assert grep_dir(spool, needles) == {}
