"""A capture killed (SIGKILL, an OOM kill) cannot say what it lost; the next capture on the
same folder does (issue 22): one warning line with the bytes, the
nodetap_backlog_lost_bytes_total and nodetap_unclean_stops_total counters, and no raw bytes
of the dead capture left on disk. A clean stop leaves no ledger and no warning."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agent import backlog_ledger
from tests.capture.clients import curl
from tests.support.servers import python_server_process

REPO = Path(__file__).resolve().parents[2]


def test_recover_counts_and_removes_what_a_dead_capture_left(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    spool = tmp_path / "nodetap-spool-x"
    spool.mkdir()
    (spool / "0000000000000000.seg").write_bytes(b"r" * 5000)
    ledger = tmp_path / f"{backlog_ledger.PREFIX}{dead.stdout.strip()}.json"
    doc = {"pid": int(dead.stdout), "started": "1", "spool_dir": str(spool), "backlog_bytes": 300}
    ledger.write_text(json.dumps(doc))
    # a running capture's ledger (this process) is left alone
    live = backlog_ledger.Ledger(str(tmp_path), lambda: 7, interval=60)
    before = backlog_ledger.LOST_BYTES._value.get()
    lost = backlog_ledger.recover(str(tmp_path))
    assert lost == backlog_ledger.Lost(1, 5000)  # measured: the drain did not remove it
    assert "5000 bytes" in lost.line()
    assert backlog_ledger.LOST_BYTES._value.get() - before == 5000
    assert not spool.exists() and not ledger.exists() and live.path.exists()
    assert oct(live.path.stat().st_mode & 0o777) == "0o600"
    live.close()
    assert not live.path.exists()
    assert backlog_ledger.recover(str(tmp_path)) == backlog_ledger.Lost()


def _capture(tmp: Path, port: int, *extra: str) -> subprocess.Popen[bytes]:
    """A capture whose temporary folder (where its ledger goes) is tmp."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "capture", "--port", str(port), "--no-tls",
         "-o", os.devnull, *extra],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        env={**os.environ, "TMPDIR": str(tmp)},
    )  # fmt: skip
    return proc


def _started(proc: subprocess.Popen[bytes]) -> list[str]:
    """stderr lines up to and with "nodetap: capturing"."""
    assert proc.stderr is not None
    lines: list[str] = []
    while True:
        line = proc.stderr.readline().decode()
        if not line:
            raise AssertionError("capture ended: " + "".join(lines))
        lines.append(line)
        if line.startswith("nodetap: capturing"):
            return lines


@pytest.mark.bpf
@pytest.mark.root
@pytest.mark.slow
def test_sigkill_is_counted_on_the_next_start(tmp_path: Path) -> None:
    """Records are decoded at once: what a SIGKILL loses is what waited in the ring buffer
    (the ledger's count, at most a second old), said and counted by the next start; no
    captured byte is ever on disk."""
    with python_server_process() as srv:
        first = _capture(tmp_path, srv.port, "--duration", "120")
        try:
            _started(first)
            (ledger,) = tmp_path.glob(f"{backlog_ledger.PREFIX}*.json")
            assert json.loads(ledger.read_text())["pid"] == first.pid
            for i in range(4):
                curl(f"{srv.url}/echo/{i}", "--data-binary", "x" * 1000, "-o", os.devnull)
            time.sleep(1.2)  # one more ledger write
            backlog = json.loads(ledger.read_text())["backlog_bytes"]
            assert 0 <= backlog < 1 << 20, backlog  # decoded at once: little waits
            first.send_signal(signal.SIGKILL)
            first.wait(30)
        finally:
            if first.poll() is None:
                first.kill()
                first.wait(30)
        second = _capture(tmp_path, srv.port, "--duration", "1")
        lines = _started(second)
        _, err = second.communicate(timeout=120)
    (warning,) = [line for line in lines if "without a clean exit" in line]
    assert warning.startswith("nodetap: warning: 1 earlier capture(s)")
    assert int(warning.split(";")[1].split()[0]) == backlog
    assert second.returncode == 0, err.decode()
    # nothing of either capture left: no ledger, no captured bytes
    assert list(tmp_path.iterdir()) == []
