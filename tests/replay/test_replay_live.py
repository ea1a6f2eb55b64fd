"""Replay against real servers: what arrives matches the recording; rates and timing hold."""

from __future__ import annotations

import itertools
import json
import statistics
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from replay.plan import Plan
from replay.report import table
from replay.runner import run_replay
from tests.replay.helpers import record
from tests.support.lab import Lab
from tests.support.servers import free_port, nginx, wait_for_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
NGINX_REQS = [
    ("GET", "/hello", [("User-Agent", "rec/1"), ("X-Trace", "a")], b""),
    ("POST", "/echo", [("Content-Type", "text/plain")], b"payload-123"),
    ("GET", "/status/204", [], b""),
    ("HEAD", "/hello", [], b""),
    ("PUT", "/echo", [("X-Big", "y" * 500)], b"z" * 5000),
]


def _log_requests(lines: list[str]) -> Counter[str]:
    """'METHOD URL' of nginx access log lines."""
    return Counter(line.split('"')[1].rsplit(" ", 1)[0] for line in lines)


def test_replay_nginx_requests_match_recording(tmp_path: Path) -> None:
    with nginx() as ng:
        cap = tmp_path / "cap.jsonl"
        n = record("127.0.0.1", ng.port, NGINX_REQS * 30, cap)
        recorded = _log_requests(ng.access_log_lines(at_least=n))  # the last line comes late
        before = len(ng.access_log_lines())
        report = run_replay(
            Plan(capture=str(cap), target=ng.url, vusers=6, processes=2), progress=False
        )
        print(table(report))
        replayed = _log_requests(ng.access_log_lines(at_least=before + n)[before:])
    assert n == 150 and report["requests"]["sent"] == 150 == report["requests"]["planned"]
    assert replayed == recorded
    assert report["errors"]["total"] == 0
    assert report["comparison"] == {"compared": 150, "mismatched": 0, "by_kind": {}, "samples": []}
    assert report["requests"]["statuses"] == {"200": 120, "204": 30}
    assert report["latency_ms"]["count"] == 150 and report["latency_ms"]["p99"] > 0
    assert report["memory"]["peak_rss_kb_max"] > 0


def _server_log(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def _key(rec: dict[str, Any]) -> str:
    hs = [
        (k, v)
        for k, v in rec["headers"]
        if k.lower()
        not in (
            "host",
            "content-length",
            "connection",
            "accept-encoding",
        )
    ]
    return json.dumps([rec["method"], rec["path"], hs, rec["body_sha256"]])


@pytest.fixture
def lab() -> Iterator[Lab]:
    with Lab() as lab:
        yield lab


SERVICE_REQS = [
    ("GET", "/api/items?page=1", [("Accept", "application/json"), ("X-Session", "s1")], b""),
    ("POST", "/api/items", [("Content-Type", "application/json")], b'{"name": "a", "n": 1}'),
    ("DELETE", "/api/items/7", [("X-Reason", "cleanup")], b""),
    ("PATCH", "/api/items/8", [("Content-Type", "application/json")], b'{"n": 2}'),
]


@pytest.mark.root
@pytest.mark.netns
def test_replay_python_service_in_netns_matches_and_diffs(lab: Lab, tmp_path: Path) -> None:
    cli, srv = lab.netns("cli"), lab.netns("srv")
    link = lab.link(cli, srv)
    # Record against the service on loopback (the same program, its own log).
    rec_log, rep_log = tmp_path / "recorded.log", tmp_path / "replayed.log"
    port = free_port()
    lab.popen(
        None,
        [sys.executable, str(HERE / "recording_server.py"), "127.0.0.1", str(port), str(rec_log)],
    )
    wait_for_port("127.0.0.1", port)
    cap = tmp_path / "cap.jsonl"
    record("127.0.0.1", port, SERVICE_REQS * 10, cap)
    # Replay from the client namespace to the service in the server namespace.
    lab.popen(srv, [sys.executable, str(HERE / "recording_server.py"), "::", "8080", str(rep_log)])
    lab.run(
        cli,
        [
            sys.executable,
            "-c",
            f"from tests.support.servers import wait_for_port as w;w('{link.b_ip}', 8080)",
        ],
    )
    target = f"http://{link.b_ip}:8080"
    plain = run_replay(
        Plan(capture=str(cap), target=target, netns=cli.name, vusers=4, processes=2), progress=False
    )
    got = Counter(_key(r) for r in _server_log(rep_log))
    want = Counter(_key(r) for r in _server_log(rec_log))
    assert got == want and sum(got.values()) == 40
    # The replies carry a fresh time and id: mismatches, with the JSON paths named...
    assert plain["comparison"]["mismatched"] == 40
    assert plain["comparison"]["by_kind"]["body"] >= 40  # $.ts always, $.id mostly
    assert any("body $.ts" in d for s in plain["comparison"]["samples"] for d in s["diffs"])
    assert plain["conntrack"]["netns"] == cli.name
    # ...and none once those paths are ignored. IPv6 to the same service.
    target6 = f"http://[{link.b_ip6}]:8080"
    quiet = run_replay(
        Plan(
            capture=str(cap),
            target=target6,
            netns=cli.name,
            vusers=4,
            ignore_json_paths=["$.ts", "$.id"],
        ),
        progress=False,
    )
    print(table(quiet))
    assert quiet["comparison"]["mismatched"] == 0 and quiet["errors"]["total"] == 0


def test_rate_lands_on_plan(tmp_path: Path) -> None:
    with nginx() as ng:
        cap = tmp_path / "cap.jsonl"
        record("127.0.0.1", ng.port, [("GET", "/hello", [], b"")] * 20, cap)
        report = run_replay(
            Plan(capture=str(cap), target=ng.url, rate=150, loops=10, vusers=8), progress=False
        )
    rate = report["rate"]
    print("rate", rate)
    assert report["requests"]["sent"] == 200
    assert rate["planned_per_s"] == 150
    assert abs(rate["ratio"] - 1) < 0.1  # a few percent; loose for busy shared machines


def test_speed_and_original_timing(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "srv.log"
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "recording_server.py"), "127.0.0.1", str(port), str(log)]
    )
    try:
        wait_for_port("127.0.0.1", port)
        cap = tmp_path / "cap.jsonl"
        # Recorded 20 ms apart (timestamps set so the recording itself is exact).
        record(
            "127.0.0.1",
            port,
            [("GET", f"/t/{i}", [], b"") for i in range(100)],
            cap,
            ts_step_ns=20_000_000,
        )
        log.write_text("")
        report = run_replay(
            Plan(
                capture=str(cap),
                target=f"http://127.0.0.1:{port}",
                timing="original",
                speed=2.0,
                vusers=8,
            ),
            progress=False,
        )
        arrivals = sorted(r["t"] for r in _server_log(log))
    finally:
        proc.terminate()
        proc.wait()
    rate = report["rate"]
    # Planned: 99 gaps of 10 ms (20 ms at 2x) = 100/s.
    assert rate["planned_per_s"] == pytest.approx(100, rel=0.01)
    assert abs(rate["ratio"] - 1) < 0.1
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    errors_ms = sorted(abs(g - 0.010) * 1000 for g in gaps)
    dist = {
        "p50": statistics.median(errors_ms),
        "p90": errors_ms[int(0.9 * len(errors_ms))],
        "max": errors_ms[-1],
    }
    print("inter-arrival error ms at the server:", dist, "schedule lag:", rate["schedule_lag_ms"])
    assert len(arrivals) == 100
    assert dist["p50"] < 10.0
    assert rate["schedule_lag_ms"]["count"] == 100


def test_cli_writes_report_and_table(tmp_path: Path) -> None:
    with nginx() as ng:
        cap = tmp_path / "cap.jsonl"
        record("127.0.0.1", ng.port, NGINX_REQS[:2] * 5, cap)
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "cli",
                "replay",
                str(cap),
                "--target",
                ng.url,
                "--connection",
                "close",
                "--report",
                str(tmp_path / "r.json"),
                "--no-progress",
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
    assert out.returncode == 0, out.stderr
    assert "10 sent / 10 planned" in out.stdout and "ceiling on new connections" in out.stderr
    rep = json.loads((tmp_path / "r.json").read_text())
    assert rep["connections"]["opened"] == 10 and rep["connections"]["reused"] == 0
    bad = subprocess.run(
        [sys.executable, "-m", "cli", "replay", str(tmp_path / "nope"), "--target", ng.url],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert bad.returncode == 2 and "not found" in bad.stderr and "Traceback" not in bad.stderr


def test_duration_loop_and_as_recorded_connections(tmp_path: Path) -> None:
    with nginx() as ng:
        cap = tmp_path / "cap.jsonl"
        # Every other recorded exchange closed its connection.
        record("127.0.0.1", ng.port, [("GET", "/hello", [], b"")] * 10, cap)
        lines = cap.read_text().splitlines()
        mixed = tmp_path / "mixed.jsonl"
        with mixed.open("w") as f:
            for i, line in enumerate(lines):
                pair = json.loads(line)
                if i % 2:
                    headers = pair["http"]["req"]["headers"]
                    assert headers[0]["name"] == "Host"
                    headers.insert(0, {"name": "Connection", "value": "close"})
                f.write(json.dumps(pair) + "\n")
        rep = run_replay(
            Plan(
                capture=str(mixed), target=ng.url, connection="as-recorded", vusers=1, processes=1
            ),
            progress=False,
        )
        timed = run_replay(
            Plan(capture=str(cap), target=ng.url, rate=40, loops=0, duration=1.0, vusers=2),
            progress=False,
        )
    assert rep["requests"]["sent"] == 10
    assert rep["connections"]["opened"] == 5 and rep["connections"]["reused"] == 5
    assert 38 <= timed["requests"]["sent"] <= 42 and timed["requests"]["planned"] == 40


def test_errors_by_kind(tmp_path: Path) -> None:
    import socket
    import threading

    with nginx() as ng:
        cap = tmp_path / "cap.jsonl"
        record("127.0.0.1", ng.port, [("GET", "/hello", [], b"")] * 6, cap)
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    rude = socket.create_server(("127.0.0.1", 0))  # accepts, closes at once
    held: list[socket.socket] = []

    def serve(srv: socket.socket, keep: bool) -> None:
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            if keep:
                held.append(c)
            else:
                c.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
                c.close()

    for srv, keep in ((silent, True), (rude, False)):
        threading.Thread(target=serve, args=(srv, keep), daemon=True).start()
    try:
        kinds = {}
        for name, port in (
            ("timeout", silent.getsockname()[1]),
            ("reset", rude.getsockname()[1]),
            ("refused", free_port()),
        ):
            rep = run_replay(
                Plan(
                    capture=str(cap),
                    target=f"http://127.0.0.1:{port}",
                    timeout=0.5,
                    vusers=3,
                    processes=1,
                ),
                progress=False,
            )
            kinds[name] = rep["errors"]["by_kind"]
    finally:
        silent.close()
        rude.close()
        for c in held:
            c.close()
    assert kinds == {"timeout": {"timeout": 6}, "reset": {"reset": 6}, "refused": {"refused": 6}}
