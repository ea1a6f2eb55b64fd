"""`nodetap replay --snapshot ID --forwarder ADDR`: what users replay is a snapshot frozen in
a forwarder; the replay fetches it (streamed) and sends it to the target. `--since TIME`
instead of a snapshot replays what the forwarder stored since then (the replay Job's way)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agent.sinks.forwarder import ForwarderSink
from forwarder.server import serve
from nodetap.v1 import rrpair_pb2 as pb
from tests.forwarder.traffic import Req, exchange_pairs
from tests.support.servers import nginx

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=REPO, capture_output=True, text=True, timeout=120, check=check,
    )  # fmt: skip


@contextmanager
def _forwarder_holding(pairs: list[pb.RRPair], store: Path) -> Iterator[str]:
    """A forwarder on a free port that has stored the pairs; its address."""
    h = serve("127.0.0.1:0", str(store))
    addr = f"127.0.0.1:{h.port}"
    try:
        sink = ForwarderSink(addr, spool_dir=None, token=None, tls=None)
        for p in pairs:
            sink.put(p)
        assert sink.flush(timeout=30)
        sink.close(timeout=10)
        yield addr
    finally:
        h.stop(0)


def test_replay_a_snapshot_from_the_forwarder(tmp_path: Path) -> None:
    with nginx() as srv:
        pairs = list(exchange_pairs(srv.port, [Req("GET", f"/hello?s={i}") for i in range(12)]))
        with _forwarder_holding(pairs, tmp_path / "store") as addr:
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
    assert sorted(line.split('"')[1] for line in served) == sorted(
        f"GET /hello?s={i} HTTP/1.1" for i in range(12)
    )
    assert json.loads(report.read_text())
    assert "mismatches   0 of 12" in r.stdout
    assert bad.returncode != 0 and "Traceback" not in bad.stderr


def test_replay_what_the_forwarder_stored_since(tmp_path: Path) -> None:
    with nginx() as srv:
        pairs = list(exchange_pairs(srv.port, [Req("GET", f"/since?s={i}") for i in range(7)]))
        with _forwarder_holding(pairs, tmp_path / "store") as addr:
            before = len(srv.access_log_lines())
            r = cli("replay", "--forwarder", addr, "--since", "10m", "--target", srv.url,
                    "--ignore-header", "Date", "--no-progress")  # fmt: skip
            served = srv.access_log_lines(at_least=before + 7)[before:]
            # a window that ends before anything was stored: nothing to replay, one line
            empty = cli("replay", "--forwarder", addr, "--since", "10m", "--until", "5m",
                        "--target", srv.url, check=False)  # fmt: skip
    assert "stored since 10m: 7 RRPairs" in r.stderr
    assert sorted(line.split('"')[1] for line in served) == sorted(
        f"GET /since?s={i} HTTP/1.1" for i in range(7)
    )
    assert "mismatches   0 of 7" in r.stdout
    assert empty.returncode != 0 and "nothing to replay" in empty.stderr
    assert len(empty.stderr.splitlines()) == 1, empty.stderr


@pytest.mark.root
def test_a_capture_file_it_cannot_read_is_one_line(tmp_path: Path) -> None:
    """Root without CAP_DAC_OVERRIDE (the replay Job's container) and a 0600 file of
    another user: one line that says so, not a traceback."""
    f = tmp_path / "capture.jsonl"
    f.write_text("{}\n")
    f.chmod(0o600)
    os.chown(f, 65532, 65532)
    r = subprocess.run(
        ["capsh", "--drop=cap_dac_override,cap_dac_read_search", "--",
         "-c", f"{sys.executable} -m cli replay {f} --target http://127.0.0.1:1"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode != 0
    assert r.stderr.startswith("nodetap: cannot read capture file") and "Permission" in r.stderr
    assert len(r.stderr.splitlines()) == 1, r.stderr


def test_snapshot_and_capture_file_are_exclusive() -> None:
    r = cli("replay", "x.jsonl", "--snapshot", "s", "--forwarder", "127.0.0.1:1",
            "--target", "http://127.0.0.1:1", check=False)  # fmt: skip
    assert r.returncode == 2 and "not both" in r.stderr
    r = cli("replay", "--target", "http://127.0.0.1:1", check=False)
    assert r.returncode == 2 and "--forwarder ADDR with --snapshot ID or --since" in r.stderr
    r = cli("replay", "--since", "10m", "--target", "http://127.0.0.1:1", check=False)
    assert r.returncode == 2 and "add --forwarder ADDR" in r.stderr
    r = cli("replay", "--forwarder", "127.0.0.1:1", "--target", "http://127.0.0.1:1",
            check=False)  # fmt: skip
    assert r.returncode == 2 and "--snapshot ID or --since TIME" in r.stderr
