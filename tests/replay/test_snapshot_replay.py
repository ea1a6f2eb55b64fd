"""`nodetap replay --snapshot ID --forwarder ADDR`: what users replay is a snapshot frozen in
a forwarder; the replay fetches it (streamed) and sends it to the target."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from agent.sinks.forwarder import ForwarderSink
from forwarder.server import serve
from tests.forwarder.traffic import Req, exchange_pairs
from tests.support.servers import nginx

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=check,
    )  # fmt: skip


def test_replay_a_snapshot_from_the_forwarder(tmp_path: Path) -> None:
    with nginx() as srv:
        pairs = list(exchange_pairs(srv.port, [Req("GET", f"/hello?s={i}") for i in range(12)]))
        h = serve("127.0.0.1:0", str(tmp_path / "store"))
        addr = f"127.0.0.1:{h.port}"
        try:
            sink = ForwarderSink(addr, spool_dir=None, token=None, tls=None)
            for p in pairs:
                sink.put(p)
            assert sink.flush(timeout=30)
            sink.close(timeout=10)
            sid = cli("snapshot", "create", "--forwarder", addr, "--name", "t").stdout.strip()
            before = len(srv.access_log_lines())
            report = tmp_path / "report.json"
            r = cli(
                "replay", "--snapshot", sid, "--forwarder", addr, "--target", srv.url,
                "--ignore-header", "Date", "--no-progress", "--report", str(report),
            )  # fmt: skip
            assert "12 RRPairs" in r.stderr
            served = srv.access_log_lines(at_least=before + 12)[before:]
            bad = cli("replay", "--snapshot", "snap-nope", "--forwarder", addr,
                      "--target", srv.url, check=False)  # fmt: skip
        finally:
            h.stop(0)
    assert sorted(line.split('"')[1] for line in served) == sorted(
        f"GET /hello?s={i} HTTP/1.1" for i in range(12)
    )
    assert json.loads(report.read_text())
    assert "mismatches   0 of 12" in r.stdout
    assert bad.returncode != 0 and "Traceback" not in bad.stderr


def test_snapshot_and_capture_file_are_exclusive() -> None:
    r = cli("replay", "x.jsonl", "--snapshot", "s", "--forwarder", "127.0.0.1:1",
            "--target", "http://127.0.0.1:1", check=False)  # fmt: skip
    assert r.returncode == 2 and "not both" in r.stderr
    r = cli("replay", "--target", "http://127.0.0.1:1", check=False)
    assert r.returncode == 2 and "--snapshot ID --forwarder ADDR" in r.stderr
