"""The exit summary of `nodetap capture` says what happened to every RRPair (issue 25:
with the forwarder down it said "drops: none" and nothing about the spooled RRPairs)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cli.capture_summary import format_summary
from tests.capture.clients import curl
from tests.support.servers import free_port, nginx

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.bpf
@pytest.mark.root
@pytest.mark.slow
def test_forwarder_down_summary_counts_the_spooled_pairs(tmp_path: Path) -> None:
    down = f"127.0.0.1:{free_port()}"  # nothing listens there
    spool = tmp_path / "spool"
    out = tmp_path / "pairs.jsonl"
    with nginx() as ngx:
        args = ["--port", str(ngx.port), "--count", "6", "--duration", "60", "-w", str(out)]
        args += ["--forwarder", down, "--spool-dir", str(spool)]
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "capture", *args],
            cwd=REPO,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stderr is not None
            head: list[str] = []
            while not (line := proc.stderr.readline()).startswith("nodetap: capturing"):
                assert line, "".join(head)
                head.append(line)
            curl(ngx.url + "/hello?a", ngx.url + "/hello?b", ngx.url + "/hello?c")
            _, err = proc.communicate(timeout=90)
        finally:
            if proc.poll() is None:
                proc.terminate()
            proc.wait(timeout=60)
    text = err
    assert proc.returncode == 0, text
    n = len(out.read_text().splitlines())
    assert n == 6, text  # both sides of 3 exchanges: nginx's and curl's
    assert f"nodetap: RRPairs: {n} written to {out}, 0 dropped by edge rules" in text, text
    assert f"nodetap: forwarder {down}: {n} sent, 0 acknowledged, {n} spooled to {spool}" in text
    assert "nodetap: dropped: nothing" in text
    assert "drops: none" not in text


def test_drops_are_grouped_by_unit() -> None:
    summary = {
        "rrpairs": 5,
        "conns_tracked": 2,
        "drop_truncated_bytes": 100,
        "drop_iov_bytes": 20,
        "stream_gap_bytes": 0,
        "drop_ringbuf_data_records": 3,
        "drop_mmsg_calls": 0,
        "drop_conn_table_full": 1,
        "written": 4,
        "rules_dropped": 1,
        "sink_put": 4,
        "sink_acked": 2,
        "sink_dropped_too_large": 1,
        "sink_dropped_spool_full": 1,
    }
    lines = format_summary(summary, output="-", forwarder="fwd:7070").splitlines()
    assert lines[1:] == [
        "nodetap: RRPairs: 4 written to stdout, 1 dropped by edge rules",
        "nodetap: forwarder fwd:7070: 4 sent, 2 acknowledged, 2 dropped "
        "(spool_full=1, too_large=1)",
        "nodetap: dropped: 120 bytes (iov=20, truncated=100); 3 records (ringbuf_data=3); "
        "0 calls; 0 pieces; 1 connections (conn_table_full=1)",
    ]
