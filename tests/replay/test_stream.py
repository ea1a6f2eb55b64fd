"""Live shadowing: `nodetap replay - --target URL` sends each pair as it arrives on stdin, with
memory bounded whatever the input's length (real nginx as the target)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.replay.helpers import record
from tests.support.servers import nginx

ROOT = Path(__file__).resolve().parents[2]
BODY = bytes(range(256)) * 32  # 8 KiB: each line holds it base64-encoded (~11 KB)


def _lines(template: str, n: int) -> list[str]:
    d = json.loads(template)
    out = []
    for i in range(n):
        d["id"] = f"s-{i}"
        out.append(json.dumps(d) + "\n")
    return out


def _replay(target: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "replay", "-", "--target", target, "--no-progress",
         "--json", "--processes", "2", "--vusers", "8", *extra],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip


def _template(port: int, tmp: Path) -> str:
    cap = tmp / "one.jsonl"
    record("127.0.0.1", port, [("GET", "/big.bin", [], b"")], cap)
    return cap.read_text().splitlines()[0]


def test_each_pair_is_sent_as_it_arrives(tmp_path: Path) -> None:
    with nginx(files={"big.bin": BODY}) as ng:
        lines = _lines(_template(ng.port, tmp_path), 6)
        deadline = time.monotonic() + 10  # nginx logs the recorded request a moment later
        while not ng.access_log_lines() and time.monotonic() < deadline:
            time.sleep(0.05)
        before = len(ng.access_log_lines())
        proc = _replay(ng.url)
        assert proc.stdin is not None
        try:
            proc.stdin.write("".join(lines[:3]))
            proc.stdin.flush()
            deadline = time.monotonic() + 30
            while len(ng.access_log_lines()) - before < 3 and time.monotonic() < deadline:
                time.sleep(0.1)
            # the first three arrived at nginx while stdin is still open
            assert len(ng.access_log_lines()) - before == 3
            out, err = proc.communicate("".join(lines[3:]), timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err
    report = json.loads(out)
    assert report["requests"]["sent"] == 6 and report["comparison"]["mismatched"] == 0


def _shadow(url: str, lines: list[str]) -> dict[str, Any]:
    proc = _replay(url)
    try:
        # communicate writes through the pipe as the replay reads it
        out, err = proc.communicate("".join(lines), timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    return json.loads(out)  # type: ignore[no-any-return]


@pytest.mark.slow
def test_ten_thousand_pairs_with_bounded_memory(tmp_path: Path) -> None:
    with nginx(files={"big.bin": BODY}) as ng:
        template = _template(ng.port, tmp_path)
        small = _shadow(ng.url, _lines(template, 1000))
        lines = _lines(template, 10_000)
        big = _shadow(ng.url, lines)
    total_mb = sum(len(x) for x in lines) / 1e6
    assert total_mb > 100  # held in memory, the input alone would take this much
    assert big["requests"]["sent"] == 10_000 == big["requests"]["responses"]
    assert big["comparison"]["mismatched"] == 0 and big["errors"]["total"] == 0
    peak_small = small["memory"]["peak_rss_kb_max"] / 1024
    peak_big = big["memory"]["peak_rss_kb_max"] / 1024
    print(
        f"input {total_mb:.0f} MB; peak RSS 1k pairs {peak_small:.1f} MiB, 10k {peak_big:.1f} MiB"
    )
    # ten times the input, about the same memory (a buffered input would add ~100 MB)
    assert peak_big < peak_small + 25, (peak_small, peak_big)
