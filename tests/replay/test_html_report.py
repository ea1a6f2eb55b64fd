"""--html: the report opened in headless Chromium (Debian's chromium) renders its charts."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.replay.helpers import Req, record
from tests.support.servers import nginx

ROOT = Path(__file__).resolve().parents[2]


def _dom(page: Path) -> str:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is missing: scripts/setup.sh installs it"
    with tempfile.TemporaryDirectory(prefix="nodetap-chromium-") as profile:
        r = subprocess.run(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--dump-dom",
             page.as_uri()],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_html_report_renders_in_chromium(tmp_path: Path) -> None:
    with nginx(files={"a.txt": b"alpha\n", "b.txt": b"bravo\n"}) as ng:
        cap = tmp_path / "cap.jsonl"
        reqs: list[Req] = [("GET", "/a.txt", [], b""), ("GET", "/b.txt", [], b"")]
        record("127.0.0.1", ng.port, reqs * 20, cap)
        (ng.root / "www" / "a.txt").write_bytes(b"changed\n")
        page = tmp_path / "report.html"
        r = subprocess.run(
            [sys.executable, "-m", "cli", "replay", str(cap), "--target", ng.url, "--no-progress",
             "--rate", "40/s", "--sut-pid", str(ng.proc.pid), "--html", str(page),
             "--fail-on", "mismatches"],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert r.returncode == 3, r.stderr
    text = page.read_text()
    # self-contained: plotly.js inlined, nothing loaded from a network
    assert len(text) > 1_000_000 and re.search(r"<script[^>]*\bsrc=", text) is None
    dom = _dom(page)
    # each chart div holds the SVG plotly drew into it once its JavaScript ran
    charts = re.findall(r'<div id="chart(\d)" class="[^"]*js-plotly-plot', dom)
    assert sorted(charts) == ["0", "1", "2"], charts
    assert dom.count('class="main-svg"') >= 6  # plotly draws two layers per chart
    assert "Latency and requests per second" in dom and "Status codes and errors" in dom
    assert "Verdict: FAILED" in dom and "mismatches&gt;0: 20" in dom
    assert "body: differs" in dom and "/a.txt" in dom  # the diffs, in the mismatch table
