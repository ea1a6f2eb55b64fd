"""The replay under its own limits: a CPU quota (throttling marks latency unreliable) and
captures far larger than memory (bounded peak)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from replay import cgroup
from replay.report import table
from tests.replay.helpers import record
from tests.support.servers import nginx

ROOT = Path(__file__).resolve().parents[2]
CPU_V1 = Path("/sys/fs/cgroup/cpu")


@contextlib.contextmanager
def cpu_cgroup(quota_us: int, period_us: int = 100_000) -> Iterator[Path]:
    """A cgroup with a CPU quota (v1 cpu controller, or v2 cpu.max); removed afterwards."""
    path, ver = cgroup.cpu_stat_path()
    if path is None:
        pytest.skip("no cpu cgroup controller")
    if ver == "v1":
        d = CPU_V1 / f"nodetap-test-{os.getpid()}"
        d.mkdir()
        (d / "cpu.cfs_period_us").write_text(str(period_us))
        (d / "cpu.cfs_quota_us").write_text(str(quota_us))
    else:
        d = path.parent / f"nodetap-test-{os.getpid()}"
        d.mkdir()
        (d / "cpu.max").write_text(f"{quota_us} {period_us}")
    try:
        yield d
    finally:
        for _ in range(50):
            try:
                d.rmdir()
                break
            except OSError:
                time.sleep(0.1)


@pytest.mark.root
def test_cpu_throttling_marks_latency_unreliable(tmp_path: Path) -> None:
    with nginx() as ng:
        cap = tmp_path / "cap.jsonl"
        record("127.0.0.1", ng.port, [("GET", "/hello", [], b"")] * 50, cap)
        with cpu_cgroup(10_000) as cg:
            out = subprocess.run(
                [
                    "sh",
                    "-c",
                    f'echo $$ > {cg}/cgroup.procs && exec "$@"',
                    "sh",
                    sys.executable,
                    "-m",
                    "cli",
                    "replay",
                    str(cap),
                    "--target",
                    ng.url,
                    "--loop",
                    "40",
                    "--processes",
                    "1",
                    "--json",
                    "--no-progress",
                ],
                capture_output=True,
                text=True,
                cwd=ROOT,
                timeout=120,
            )
    assert out.returncode == 0, out.stderr
    rep = json.loads(out.stdout)
    cpu = rep["cpu"]
    print({k: cpu[k] for k in ("cgroup", "version", "quota", "nr_throttled", "throttled_s")})
    assert cpu["cgroup"].endswith(f"nodetap-test-{os.getpid()}")
    assert cpu["quota"] == "10000 100000"
    assert cpu["nr_throttled"] > 0 and cpu["throttled_s"] > 0
    assert rep["latency_reliable"] is False and rep["latency_unreliable_requests"] > 0
    assert rep["requests"]["responses"] == 2000


def test_cpu_stat_v2_format(tmp_path: Path) -> None:
    stat = tmp_path / "cpu.stat"
    stat.write_text("usage_usec 10\nnr_periods 7\nnr_throttled 3\nthrottled_usec 250000\n")
    mon = cgroup.CpuThrottleMonitor()
    mon.path, mon.version = stat, "v2"
    s = mon.sample()
    assert s is not None and (s.nr_periods, s.nr_throttled, s.throttled_s) == (7, 3, 0.25)
    stat.write_text("nr_periods 7\nnr_throttled 3\nthrottled_time 500000000\n")
    s = mon.sample()
    assert s is not None and s.throttled_s == 0.5


@pytest.mark.slow
def test_thousands_of_1mib_bodies_bounded_memory(tmp_path: Path) -> None:
    n = 2000
    body = bytes(range(256)) * 4096  # 1 MiB
    with nginx(files={"big.bin": body}) as ng:
        one = tmp_path / "one.jsonl"
        record("127.0.0.1", ng.port, [("GET", "/big.bin", [], b"")], one)
        line = one.read_text().strip()
        assert len(line) > 1_000_000
        cap = tmp_path / "big.jsonl"
        pair = json.loads(line)
        with cap.open("w") as f:
            for i in range(n):
                pair["id"] = f"big-{i}"
                f.write(json.dumps(pair) + "\n")
        print(f"capture: {cap.stat().st_size / 2**30:.2f} GiB, {n} responses of 1 MiB")
        # run as a user does, in processes of its own: the test process's own memory
        # (whatever earlier tests left in it) is not the replay's
        report_path = tmp_path / "report.json"
        subprocess.run(
            [sys.executable, "-m", "cli", "replay", str(cap), "--target", ng.url,
             "--vusers", "4", "--processes", "2", "--no-progress", "--report", str(report_path)],
            cwd=Path(__file__).resolve().parents[2], check=True, timeout=600,
        )  # fmt: skip
        report = json.loads(report_path.read_text())
        print(table(report))
        ng_proc = ng.proc
        del ng_proc
    shutil.rmtree(tmp_path, ignore_errors=True)
    peak = report["memory"]["peak_rss_kb_max"]
    print(
        f"peak memory: {peak / 1024:.1f} MiB per process (largest), "
        f"{sum(report['memory']['peak_rss_kb_per_process']) / 1024:.1f} MiB all processes"
    )
    assert report["requests"]["responses"] == n and report["comparison"]["mismatched"] == 0
    assert peak < 200 * 1024  # holding the bodies would take 2 GiB
