"""Watching a capture (issue 25): with -o table (or -c COUNT), rows come as exchanges complete
(decoded at once), fitted to the terminal's width; packet-mode rows show no PID 0."""

from __future__ import annotations

import contextlib
import io
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from cli.table import COLUMNS, TableWriter, fit, format_row
from nodetap.v1 import rrpair_pb2 as pb
from tests.capture.clients import curl
from tests.support.servers import nginx

REPO = Path(__file__).resolve().parents[2]


def _pair(pid: int = 0) -> pb.RRPair:
    p = pb.RRPair(direction=pb.NETWORK, duration_us=1234)
    p.ts.FromNanoseconds(1_700_000_000_123_000_000)
    p.client.ip, p.client.port = "10.0.0.1", 40000
    p.server.ip, p.server.port = "10.0.0.2", 8080
    p.meta.pid = pid
    p.http.req.method, p.http.req.url = "GET", "/api/" + "x" * 200
    p.http.res.status_code = 200
    return p


@pytest.mark.parametrize("width", [60, 80, 100, 120, 160])
def test_rows_fit_the_terminal_width(width: int) -> None:
    buf = io.StringIO()
    w = TableWriter(buf, width=width)
    w.write(_pair())
    lines = buf.getvalue().splitlines()
    assert all(len(line) <= width for line in lines[1:]), lines
    assert "GET" in lines[1] and "200" in lines[1] and "/api/x" in lines[1]


def test_no_width_keeps_every_column() -> None:
    cols, url = fit(None)
    assert cols == list(COLUMNS) and url == 80


def test_packet_mode_rows_have_no_pid_0() -> None:
    row = format_row(_pair(pid=0)).split()
    assert row[2] == "-" and "0" not in row[2:4]
    assert format_row(_pair(pid=4321)).split()[2] == "4321"


@pytest.mark.bpf
@pytest.mark.root
def test_table_rows_come_while_capturing() -> None:
    with nginx() as ngx:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "capture", "--port", str(ngx.port), "-o",
             "table", "--duration", "60"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=dict(os.environ, PYTHONFAULTHANDLER="1"),  # SIGABRT prints every thread's stack
        )  # fmt: skip
        assert proc.stderr is not None and proc.stdout is not None
        err: list[str] = []
        stderr = proc.stderr
        reader = threading.Thread(target=lambda: err.extend(iter(stderr.readline, "")), daemon=True)
        try:
            start = stderr.readline()
            assert start.startswith("nodetap: capturing"), start
            curl(ngx.url + "/hello?watch=1")
            lines: queue.Queue[str] = queue.Queue()
            out = proc.stdout

            def pump() -> None:
                for x in iter(out.readline, ""):
                    lines.put(x)

            threading.Thread(target=pump, daemon=True).start()
            # read on: a full stderr pipe would stall the capture
            reader.start()
            rows: list[str] = []
            deadline = time.monotonic() + 60
            while len(rows) < 3 and time.monotonic() < deadline:  # header + both sides
                with contextlib.suppress(queue.Empty):
                    rows.append(lines.get(timeout=1))
            assert proc.poll() is None  # still capturing: the rows did not wait for the exit
            assert len(rows) == 3, (rows, err[-20:])
            assert rows[0].startswith("TIME")
            assert all("/hello?watch=1" in r for r in rows[1:])
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGABRT)  # where it is stuck, on stderr
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
                reader.join(timeout=10)
                tail = "".join(err[-60:])
                raise AssertionError(f"capture ignored SIGTERM for 30 s:\n{tail}") from None


@pytest.mark.parametrize(("duration", "ttfb"), [(17, 8), (30, 21), (100_001, 3), (5, 9)])
def test_har_timings_are_rounded(duration: int, ttfb: int) -> None:
    from forwarder.export.har import entry

    p = _pair()
    p.duration_us, p.ttfb_us = duration, ttfb
    t = entry(p)["timings"]
    for key in ("wait", "receive"):
        assert t[key] == round(t[key], 3), t  # no 0.00899999999999998
    assert t["receive"] == max(0, duration - min(ttfb, duration)) / 1000
