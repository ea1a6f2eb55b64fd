"""Deferred decoding (agent/deferred.py): a drain process spools the ring buffer, the
decoder runs at idle priority and waits while the node is busy. The RRPairs must be the
same as with direct decoding, the spool must go away, and whatever does not fit must be
counted, never lost silently."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.capture.clients import curl
from tests.support.capture import live_capture
from tests.support.servers import nginx, python_server_process

pytestmark = [pytest.mark.bpf, pytest.mark.root]

REPO = Path(__file__).resolve().parents[2]


@contextmanager
def busy_cpus(seconds: float) -> Iterator[None]:
    """Keep every CPU busy for at most `seconds` (processes that end by themselves)."""
    loop = f"import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end: pass\n"
    procs = [subprocess.Popen([sys.executable, "-c", loop]) for _ in range(os.cpu_count() or 1)]
    try:
        yield
    finally:
        for p in procs:
            p.kill()
            p.wait()


def test_deferred_capture_gives_the_same_rrpairs_and_removes_its_spool(tmp_path: Path) -> None:
    body = bytes(i % 251 for i in range(77_000))  # what the server sends for /bytes/N
    with (
        python_server_process() as srv,
        live_capture(ports=[srv.port], spool_max=64 << 20, spool_dir=str(tmp_path)) as lc,
    ):
        deferred = lc.cap._deferred
        assert deferred is not None and deferred.alive()
        spool = deferred.dir
        assert spool.parent == tmp_path
        runs = [curl(f"{srv.url}/echo/{i}", "-d", "x" * i) for i in range(1, 6)]
        runs.append(curl(f"{srv.url}/bytes/{len(body)}"))
        pairs = lc.wait_for(12)  # both sides: curl is a client process too
    inbound = sorted(lc.inbound(), key=lambda p: p.ts.ToNanoseconds())
    assert [p.http.req.url for p in inbound] == [f"/echo/{i}" for i in range(1, 6)] + [
        f"/bytes/{len(body)}"
    ]
    for i, p in enumerate(inbound[:5], start=1):
        assert p.http.req.method == "POST"
        assert p.http.req.body == b"x" * i
        assert p.http.res.status_code == 200
    assert inbound[5].http.res.body == body
    assert not any(p.flags for p in pairs)
    s = lc.cap.summary()
    assert s["defer_spooled_bytes"] > len(body)
    assert s["defer_refusals"] == 0
    assert deferred.proc.returncode == 0
    assert not spool.exists()
    assert list(tmp_path.iterdir()) == []


def test_decoding_waits_while_the_cpus_are_busy_then_catches_up() -> None:
    with python_server_process() as srv, live_capture(ports=[srv.port], spool_max=64 << 20) as lc:
        lc.wait_for(0)
        with busy_cpus(5.0):
            time.sleep(1.5)  # an open gate looks again within a second (probe_every)
            for i in range(20):
                curl(f"{srv.url}/busy/{i}")
            time.sleep(0.5)
            during = len(lc.pairs)
        got = lc.wait_for(40, timeout=30)
    assert during < 40, "decoded while every CPU was busy"
    assert sorted(p.http.req.url for p in got if p.direction == 1) == sorted(
        f"/busy/{i}" for i in range(20)
    )
    s = lc.cap.summary()
    assert s["defer_paused_ms"] > 0
    assert s["defer_peak_backlog_bytes"] > 0


def test_a_dead_drain_process_falls_back_to_the_ring_buffer() -> None:
    with python_server_process() as srv, live_capture(ports=[srv.port], spool_max=64 << 20) as lc:
        curl(f"{srv.url}/before")
        lc.wait_for(2)
        deferred = lc.cap._deferred
        assert deferred is not None
        os.kill(deferred.proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while lc.cap._deferred is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lc.cap._deferred is None, "the capture did not notice its drain process died"
        assert not deferred.dir.exists()
        curl(f"{srv.url}/after")
        got = lc.wait_for(4)
    assert {p.http.req.url for p in got} == {"/before", "/after"}
    assert lc.cap.summary()["defer_drain_failures"] == 1


def _cli_capture(*args: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "capture", *args],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline().decode()
    assert "(decoding deferred)" in line, line + proc.stderr.read().decode()
    return proc


def _load_while_decoder_stopped(
    proc: subprocess.Popen[bytes], url: str, connections: int, seconds: int
) -> None:
    """Stop the capture's decoder (its drain process goes on spooling) while wrk loads
    `url`, then let it go on and ask it to stop (Ctrl-C)."""
    proc.send_signal(signal.SIGSTOP)
    subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", url],
        capture_output=True,
        check=True,
        timeout=60,
    )
    proc.send_signal(signal.SIGCONT)
    proc.send_signal(signal.SIGINT)


def test_a_full_spool_ends_as_counted_kernel_drops(tmp_path: Path) -> None:
    out, summary_path = tmp_path / "out.jsonl", tmp_path / "summary.json"
    spool_parent = tmp_path / "spool"
    spool_parent.mkdir()
    with nginx() as ngx:
        proc = _cli_capture(
            "--port", str(ngx.port), "-o", str(out), "--summary-json", str(summary_path),
            "--defer-max", "256K", "--defer-dir", str(spool_parent), "--ringbuf-pages", "16",
        )  # fmt: skip
        try:
            # the drain process fills the spool, then the ring fills
            _load_while_decoder_stopped(proc, f"{ngx.url}/hello", 4, 2)
            served = len(ngx.access_log_lines())
            _, err = proc.communicate(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err.decode()
    assert "spool full" in err.decode()
    assert "nodetap: deferred decoding: " in err.decode()  # the exit summary says so
    s = json.loads(summary_path.read_text())
    assert s["defer_refusals"] > 0
    assert s["drop_ringbuf_data_records"] > 0
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    whole = [d for d in lines if "flags" not in d]
    assert 0 < len(whole) < served
    # every request lost to the full ring is accounted for: a flagged RRPair or a
    # counted drop (a lost record holds at least one request or response)
    flagged = len(lines) - len(whole)
    dropped = s["drop_ringbuf_data_records"] + s["drop_ringbuf_control_records"]
    assert served - len(whole) <= flagged + dropped
    assert list(spool_parent.iterdir()) == []


def test_killed_capture_leaves_no_spool_behind(tmp_path: Path) -> None:
    """Only the backlog ledger stays (sizes, for the next start: test_crash_backlog.py)."""

    def spools() -> list[Path]:
        return list(tmp_path.glob("nodetap-spool-*"))

    with python_server_process() as srv:
        proc = _cli_capture("--port", str(srv.port), "--defer-dir", str(tmp_path))
        try:
            curl(f"{srv.url}/x")
            deadline = time.monotonic() + 30  # the drain process makes it (slow under load)
            while not spools() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(spools()) == 1
            proc.kill()
            proc.wait(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    deadline = time.monotonic() + 30  # its PDEATHSIG (or its once-a-second check), then rm
    while spools() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert spools() == [], "the orphaned drain process left its spool"
    # (a kill during one of its once-a-second rewrites can also leave its .tmp)
    (ledger,) = [p for p in tmp_path.iterdir() if p.suffix == ".json"]
    assert ledger.name == f"nodetap-backlog-{proc.pid}.json"
    assert set(json.loads(ledger.read_text())) == {"pid", "started", "spool_dir", "backlog_bytes"}


def test_stopping_shows_progress_and_a_second_ctrl_c_discards_the_backlog(tmp_path: Path) -> None:
    out, summary_path = tmp_path / "out.jsonl", tmp_path / "summary.json"
    with nginx() as ngx:
        proc = _cli_capture(  # deferred decoding is the Python decoder's (--decoder python)
            "--port", str(ngx.port), "-o", str(out), "--summary-json", str(summary_path),
            "--decoder", "python",
        )  # fmt: skip
        assert proc.stderr is not None
        try:
            _load_while_decoder_stopped(proc, f"{ngx.url}/hello", 8, 3)
            served = len(ngx.access_log_lines())
            line = proc.stderr.readline().decode()
            assert "decoding the deferred backlog" in line, line
            proc.send_signal(signal.SIGINT)
            rest = proc.stderr.read().decode()
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, rest
    assert "discarding the rest of the backlog" in rest
    s = json.loads(summary_path.read_text())
    assert s["drop_defer_discarded_bytes"] > 0
    assert len(out.read_text().splitlines()) < served
