"""--fail-on: a replay judged pass/fail with exit code 3, on real replays against nginx."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from nodetap.errors import ConfigError
from replay.judge import EXIT_FAILED, judge, parse_fail_on
from tests.replay.helpers import record
from tests.support.servers import free_port, nginx

ROOT = Path(__file__).resolve().parents[2]


def _replay(cap: Path, target: str, *extra: str) -> tuple[int, dict[str, Any], str]:
    rep = cap.parent / "r.json"
    r = subprocess.run(
        [sys.executable, "-m", "cli", "replay", str(cap), "--target", target, "--no-progress",
         "--report", str(rep), "--vusers", "2", *extra],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    report = json.loads(rep.read_text()) if rep.exists() else {}
    return r.returncode, report, r.stderr


def test_fail_on_exit_codes_on_real_replays(tmp_path: Path) -> None:
    files = {"a.txt": b"alpha\n", "b.json": b'{"v": 1, "ts": 5}\n'}
    with nginx(files=files) as ng:
        cap = tmp_path / "cap.jsonl"
        record(
            "127.0.0.1", ng.port, [("GET", "/a.txt", [], b""), ("GET", "/b.json", [], b"")] * 5, cap
        )
        code, rep, err = _replay(cap, ng.url, "--fail-on", "errors,mismatches,p99>60000")
        assert code == 0, err
        assert rep["verdict"]["passed"] is True and "verdict: PASSED" in err
        # the latency objective breached: any real request takes longer than 1 ns
        code, rep, err = _replay(cap, ng.url, "--fail-on", "p99>0.000001")
        assert code == EXIT_FAILED and rep["verdict"]["failed"][0].startswith("p99>1e-06: ")
        # a planned rate the run cannot fall short of twice over: rate<2 always holds
        code, rep, _ = _replay(cap, ng.url, "--rate", "200/s", "--fail-on", "rate<2")
        assert code == EXIT_FAILED and rep["verdict"]["failed"][0].startswith("rate<2: ")
        code, rep, _ = _replay(cap, ng.url, "--rate", "200/s", "--fail-on", "rate<0.0001")
        assert code == 0 and rep["verdict"]["passed"]
        # mismatches: the server now answers differently
        (ng.root / "www" / "a.txt").write_bytes(b"changed\n")
        code, rep, err = _replay(cap, ng.url, "--fail-on", "mismatches")
        assert code == EXIT_FAILED and "mismatches>0: 5" in rep["verdict"]["failed"], err
        code, rep, _ = _replay(cap, ng.url, "--fail-on", "mismatches>5")
        assert code == 0  # 5 allowed
        code, _, _ = _replay(cap, ng.url)
        assert code == 0  # no --fail-on: the report only
    # errors: nobody listens any more
    code, rep, err = _replay(cap, f"http://127.0.0.1:{free_port()}", "--fail-on", "errors")
    assert code == EXIT_FAILED and rep["verdict"]["failed"] == ["errors>0: 10"], err


def test_fail_on_syntax_errors_exit_2(tmp_path: Path) -> None:
    cap = tmp_path / "c.jsonl"
    cap.write_text("")
    code, _, err = _replay(cap, "http://127.0.0.1:9", "--fail-on", "p99<5")
    assert code == 2 and "--fail-on 'p99<5'" in err
    code, _, err = _replay(cap, "http://127.0.0.1:9", "--fail-on", "rate<0.9")
    assert code == 2 and "give --rate N/s or --timing original" in err


def test_parse_and_judge() -> None:
    conds = parse_fail_on("errors, mismatches>2,unmatched-mocks,p99>250,rate<0.95")
    assert [str(c) for c in conds] == [
        "errors>0", "mismatches>2", "unmatched-mocks>0", "p99>250", "rate<0.95",
    ]  # fmt: skip
    for bad in ("", "latency", "errors<1", "p99", "rate>1"):
        with pytest.raises(ConfigError):
            parse_fail_on(bad)
    report = {
        "errors": {"total": 0},
        "comparison": {"mismatched": 3},
        "mocks": {"unmatched": 1},
        "latency_ms": {"count": 4, "p99": 100.0},
        "rate": {"ratio": 0.9},
    }
    v = judge(conds, report)
    assert v["failed"] == ["mismatches>2: 3", "unmatched-mocks>0: 1", "rate<0.95: 0.9"]
