"""One side, once: a loopback capture holds each exchange twice (the server's INBOUND copy and
the client's OUTBOUND one); the replay sends it once, and only the requests to the target."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from nodetap import jsonl
from replay.plan import Plan
from replay.runner import run_replay
from replay.sides import choose, count_keys
from tests.support.capture import live_capture
from tests.support.servers import nginx

ROOT = Path(__file__).resolve().parents[2]


def _get(port: int, paths: list[str]) -> None:
    """curl (another process: a capture leaves its own process out), one connection."""
    urls = [f"http://127.0.0.1:{port}{p}" for p in paths]
    out = ["-o", "/dev/null"] * len(urls)
    subprocess.run(["curl", "-sS", *out, *urls], check=True, timeout=30)


@pytest.mark.bpf
def test_both_sides_replayed_once_and_only_to_target(tmp_path: Path) -> None:
    with nginx() as a, nginx() as b:
        with live_capture(ports=[a.port, b.port]) as lc:
            _get(a.port, [f"/a{i}" for i in range(20)])
            _get(b.port, [f"/b{i}" for i in range(5)])
            lc.wait_for(50)
            lc.settle()
        cap = tmp_path / "both.jsonl"
        with cap.open("w") as f:
            for pair in lc.pairs:
                jsonl.write(f, pair)
        dirs = {(p.server.port, p.direction) for p in lc.pairs}
        assert len(dirs) == 4, dirs  # both sides of both servers were captured
        before = len(a.access_log_lines())
        report = run_replay(Plan(capture=str(cap), target=a.url, vusers=2), progress=False)
        replayed = a.access_log_lines(at_least=before + 20)[before:]
        # Today's code sent all 50 pairs (both copies of A's and B's requests) to A.
        assert len(replayed) == 20, replayed
        assert sorted(line.split('"')[1].split()[1] for line in replayed) == sorted(
            f"/a{i}" for i in range(20)
        )
        assert report["selection"] == {
            "kept": 20,
            "skipped": 30,
            "reason": f"requests addressed to 127.0.0.1:{a.port}, one copy per exchange",
        }
        assert report["comparison"]["mismatched"] == 0 and report["errors"]["total"] == 0
        # --direction overrides: the clients' copies, every server, sent to A.
        before = len(a.access_log_lines())
        r2 = run_replay(
            Plan(capture=str(cap), target=a.url, vusers=2, direction="outbound"), progress=False
        )
        assert (
            len(a.access_log_lines(at_least=before + 25)[before:]) == 25 == r2["requests"]["sent"]
        )


def test_choose_prefers_the_server_copy_per_endpoint() -> None:
    lines = [
        '{"direction":"INBOUND","server":{"ip":"10.0.0.1","port":80}}',
        '{"direction":"OUTBOUND","server":{"ip":"10.0.0.1","port":80}}',
        '{"direction":"OUTBOUND","server":{"ip":"10.0.0.2","port":8080}}',
    ]
    sel = choose(count_keys(lines), "auto", "192.168.1.1", 80)
    assert sel.keep == {("10.0.0.1:80", "INBOUND"), ("10.0.0.2:8080", "OUTBOUND")}
    assert choose(count_keys(lines), "any", "x", 1).keep is None
    only = choose(count_keys(lines[:1]), "auto", "x", 1)
    assert only.keep is None  # nothing to skip: the file is replayed as is


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def test_speed_without_original_timing_is_not_ignored(tmp_path: Path) -> None:
    cap = tmp_path / "c.jsonl"
    cap.write_text("")
    r = _cli(
        "replay", str(cap), "--target", "http://127.0.0.1:9", "--speed", "2x", "--timing", "asap"
    )
    assert r.returncode == 2 and "--speed 2x scales the recorded gaps" in r.stderr
    assert "drop --timing asap" in r.stderr
    r = _cli("replay", str(cap), "--target", "http://127.0.0.1:9", "--speed", "2", "--rate", "5")
    assert r.returncode == 2 and "give one of the two" in r.stderr
    from cli.main import build_parser
    from cli.options.replay_plan import plan_from_args

    args = build_parser().parse_args(
        ["replay", str(cap), "--target", "http://127.0.0.1:9", "--speed", "2x"]
    )
    plan = plan_from_args(args)
    assert (plan.timing, plan.speed) == ("original", 2.0)  # --speed implies original timing
