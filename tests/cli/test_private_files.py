"""Files holding captured traffic are private (issue 22): `-o` files 0600 (also one that
existed with a wider mode), the agent's spool folder 0700; devices keep their mode."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from agent.sinks.forwarder import ForwarderSink
from nodetap import jsonl
from nodetap.v1 import rrpair_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]


def _mode(p: Path | str) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def test_output_files_are_0600(tmp_path: Path) -> None:
    capture = tmp_path / "cap.jsonl"
    pair = pb.RRPair(id="x1")
    pair.http.req.method = "GET"
    pair.http.req.url = "/secret"
    pair.ts.FromNanoseconds(1_700_000_000_000_000_000)
    old_umask = os.umask(0o022)
    try:
        with jsonl.open_output(str(capture)) as fp:  # capture -w and import -w write so
            jsonl.write(fp, pair)
        assert _mode(capture) == 0o600
        capture.chmod(0o644)
        with jsonl.open_output(str(capture)) as fp:
            jsonl.write(fp, pair)
        assert _mode(capture) == 0o600
        null_mode = _mode("/dev/null")
        for fmt, name in (("har", "out.har"), ("jsonl", "out.jsonl"), ("pcap", "out.pcap")):
            out = tmp_path / name
            out.write_text("")
            out.chmod(0o644)
            r = subprocess.run(
                [sys.executable, "-m", "cli", "export", "--input", str(capture), "-o", fmt,
                 "-w", str(out)],
                cwd=ROOT, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert r.returncode == 0, r.stderr
            assert _mode(out) == 0o600, name
        r = subprocess.run(
            [sys.executable, "-m", "cli", "export", "--input", str(capture), "-w", "/dev/null"],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert r.returncode == 0 and _mode("/dev/null") == null_mode
    finally:
        os.umask(old_umask)


def test_spool_folder_is_0700(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        spool = tmp_path / "spool"
        ForwarderSink("127.0.0.1:1", spool_dir=str(spool)).close(0.1)
        assert _mode(spool) == 0o700
        spool.chmod(0o755)  # an existing, wider folder is narrowed
        ForwarderSink("127.0.0.1:1", spool_dir=str(spool)).close(0.1)
        assert _mode(spool) == 0o700
    finally:
        os.umask(old_umask)
