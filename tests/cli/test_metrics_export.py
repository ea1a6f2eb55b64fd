"""Metrics (issue 25): each process exports only its own metrics, drops are split by unit,
and `promtool check metrics` (Prometheus's own linter) accepts what /metrics serves."""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.capture.clients import curl
from tests.support.servers import free_port, nginx

REPO = Path(__file__).resolve().parents[2]
FAMILY = re.compile(r"^# TYPE (\S+) ", re.MULTILINE)


@contextmanager
def command(*args: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`nodetap ARGS --metrics-addr ...` running, with the URL of its /metrics once ready."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", *args, "--metrics-addr", f"127.0.0.1:{port}"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "no /readyz within 60 s"
            time.sleep(0.2)
        yield proc, url + "/metrics"
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return str(r.read().decode())


def promtool_ok(text: str) -> None:
    r = subprocess.run(
        ["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0, r.stdout + r.stderr


def nodetap_families(text: str) -> set[str]:
    return {f for f in FAMILY.findall(text) if f.startswith("nodetap_")}


def test_forwarder_exports_only_its_own_metrics(tmp_path: Path) -> None:
    with command("forwarder", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path)) as (_, url):
        text = scrape(url)
    families = nodetap_families(text)
    assert "nodetap_forwarder_pairs_stored_total" in families
    assert families == {f for f in families if f.startswith("nodetap_forwarder_")}, families
    promtool_ok(text)


@pytest.mark.bpf
@pytest.mark.root
def test_capture_metrics_split_drops_by_unit(tmp_path: Path) -> None:
    body = b"x" * 5000
    with nginx(files={"big": body}) as ngx:
        args = (
            "capture",
            "--port",
            str(ngx.port),
            "--max-body",
            "1K",
            "-w",
            str(tmp_path / "o"),
        )
        with command(*args) as (_, url):
            deadline = time.monotonic() + 60
            while "nodetap_dropped_bytes_total" not in scrape(url):  # attached (pipeline.py)
                assert time.monotonic() < deadline, "the capture did not start in 60 s"
                time.sleep(0.2)
            for _ in range(3):
                curl(ngx.url + "/big")
            deadline = time.monotonic() + 30
            while not re.search(
                r'^nodetap_rrpairs_total\{protocol="http"\} [1-9]', text := scrape(url), re.M
            ):
                assert time.monotonic() < deadline, text
                time.sleep(0.2)
    families = nodetap_families(text)
    assert not {f for f in families if f.startswith("nodetap_forwarder_")}, families
    assert "nodetap_drops_total" not in families  # bytes, records and calls under one name
    for unit in ("bytes", "records", "calls", "pieces", "connections"):
        assert f"nodetap_dropped_{unit}_total" in families
    assert re.search(r'^nodetap_dropped_bytes_total\{cause="iov"\} ', text, re.MULTILINE)
    assert re.search(r'^nodetap_dropped_records_total\{cause="ringbuf_data"\} ', text, re.M)
    # connections that lost data to a full ring buffer; control records kept in its reserve
    assert re.search(r'^nodetap_dropped_connections_total\{cause="ringbuf_data"\} ', text, re.M)
    assert "nodetap_ringbuf_reserved_room_records_total" in families
    promtool_ok(text)
