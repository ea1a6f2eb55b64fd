"""Distributed replay over gRPC: two agents, a merged report, a lost agent, refusals."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from nodetap.errors import NodetapError
from nodetap.transport import ClientTLS
from replay.distributed import run_distributed
from replay.plan import Plan
from replay.report import table
from tests.replay.helpers import record
from tests.support.servers import free_port, nginx, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "s3cret-token"


def _start_agent(port: int, allow: str, token: Path, *extra: str) -> subprocess.Popen[bytes]:
    """`nodetap replay-agent` on 127.0.0.1:port."""
    return subprocess.Popen(
        [sys.executable, "-m", "cli", "replay-agent", "--listen", f"127.0.0.1:{port}"]
        + ["--allow-target", allow, "--token-file", str(token), *extra],
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
    )


@contextlib.contextmanager
def agents(
    n: int, tmp: Path, allow: str = "127.0.0.0/8"
) -> Iterator[list[tuple[str, subprocess.Popen[bytes]]]]:
    tok = tmp / "token"
    tok.write_text(TOKEN + "\n")
    out = []
    try:
        for _ in range(n):
            port = free_port()
            proc = _start_agent(port, allow, tok)
            out.append((f"127.0.0.1:{port}", proc))
        for addr, _ in out:
            wait_for_port("127.0.0.1", int(addr.split(":")[1]))
        yield out
    finally:
        for _, proc in out:
            if proc.poll() is None:
                proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _capture(tmp: Path, url_port: int, n: int) -> Path:
    cap = tmp / "cap.jsonl"
    record("127.0.0.1", url_port, [("GET", f"/hello?i={i}", [], b"") for i in range(n)], cap)
    return cap


def test_two_agents_merged_totals_equal_plan(tmp_path: Path) -> None:
    with nginx() as ng:
        cap = _capture(tmp_path, ng.port, 101)
        with agents(2, tmp_path) as ags:
            report = run_distributed(
                Plan(capture=str(cap), target=ng.url, vusers=4), [a for a, _ in ags], TOKEN
            )
        print(table(report))
        lines = ng.access_log_lines()
    assert report["requests"]["planned"] == 101 == report["requests"]["sent"]
    assert report["requests"]["responses"] == 101 and report["errors"]["total"] == 0
    assert [a["sent"] for a in report["agents"]] == [51, 50]
    assert all(a["state"] == "done" and not a["lost"] for a in report["agents"])
    assert len(lines) == 202  # recording + replay
    assert report["latency_ms"]["count"] == 101


def test_agent_killed_mid_run_is_reported_lost(tmp_path: Path) -> None:
    with nginx() as ng:
        cap = _capture(tmp_path, ng.port, 120)
        with agents(2, tmp_path) as ags:
            plan = Plan(capture=str(cap), target=ng.url, rate=30, vusers=4)
            victim = ags[1][1]
            killer = threading.Timer(1.5, lambda: victim.send_signal(signal.SIGKILL))
            killer.start()
            try:
                report = run_distributed(plan, [a for a, _ in ags], TOKEN)
            finally:
                killer.cancel()
    print(table(report))
    a, b = report["agents"]
    assert a["state"] == "done" and a["sent"] == 60
    assert b["lost"] and 0 < b["not_run"] <= 60 and b["not_run_share"] > 0
    assert any(ags[1][0] in f for f in report["failures"])
    assert f"agent {ags[1][0]}" in table(report)


def test_agent_refuses_missing_token_and_foreign_target(tmp_path: Path) -> None:
    with nginx() as ng:
        cap = _capture(tmp_path, ng.port, 4)
        with agents(1, tmp_path, allow="127.0.0.1/32") as ags:
            addr = [ags[0][0]]
            with pytest.raises(NodetapError, match="UNAUTHENTICATED"):
                run_distributed(Plan(capture=str(cap), target=ng.url), addr, None)
            with pytest.raises(NodetapError, match=r"PERMISSION_DENIED.*allow-target"):
                run_distributed(Plan(capture=str(cap), target="http://127.0.0.2:80"), addr, TOKEN)
            with pytest.raises(NodetapError, match="UNAUTHENTICATED"):
                run_distributed(Plan(capture=str(cap), target=ng.url), addr, "wrong")
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "replay-agent",
            "--listen",
            "0.0.0.0:7070",
            "--allow-target",
            "10.0.0.0/8",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert bad.returncode == 2 and "without TLS and a token" in bad.stderr


def test_agent_over_tls_with_token(tmp_path: Path) -> None:
    cert, key = tmp_path / "agent.pem", tmp_path / "agent.key"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=replay-agent",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    tok = tmp_path / "token"
    tok.write_text(TOKEN)
    port = free_port()
    proc = _start_agent(port, "127.0.0.1", tok, "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        wait_for_port("127.0.0.1", port)
        with nginx() as ng:
            cap = _capture(tmp_path, ng.port, 10)
            rep = run_distributed(
                Plan(capture=str(cap), target=ng.url),
                [f"127.0.0.1:{port}"],
                TOKEN,
                ClientTLS(str(cert)),
            )
        assert rep["requests"]["responses"] == 10 and rep["agents"][0]["state"] == "done"
        # Without TLS the agent does not answer: nothing of the plan ran there.
        bad = run_distributed(Plan(capture=str(cap), target=ng.url), [f"127.0.0.1:{port}"], TOKEN)
        assert bad["agents"][0]["lost"] and bad["agents"][0]["not_run"] == 10
        assert bad["requests"]["sent"] == 0 and bad["failures"]
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def test_cli_with_agents(tmp_path: Path) -> None:
    with nginx() as ng:
        cap = _capture(tmp_path, ng.port, 12)
        with agents(2, tmp_path) as ags:
            argv = [
                sys.executable,
                "-m",
                "cli",
                "replay",
                str(cap),
                "--target",
                ng.url,
                "--agents",
                ",".join(a for a, _ in ags),
                "--token-file",
                str(tmp_path / "token"),
                "--no-progress",
            ]
            out = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=120)
            refused = subprocess.run(
                [*argv, "--notrack"], capture_output=True, text=True, cwd=ROOT, timeout=60
            )
    assert out.returncode == 0, out.stderr
    assert "12 sent / 12 planned" in out.stdout
    assert out.stdout.count("done: 6 sent") == 2
    assert refused.returncode == 2 and "not with --agents" in refused.stderr
