"""Mocks during a replay, with real processes in a network namespace of the test's own:
nginx A proxies /api/ to nginx B; both sides are captured; B is stopped; the replay against A
with --mocks answers A's calls to B from the recording (nft redirect in A's namespace)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nodetap import jsonl
from tests.support.capture import live_capture
from tests.support.lab import Lab, Netns
from tests.support.servers import NGINX_CONF, free_port

ROOT = Path(__file__).resolve().parents[2]
PROXY = """
        location /api/ {{ proxy_pass http://127.0.0.1:{b}; }}
"""
API = {"api/users.json": b'{"users": ["ann", "bob"]}\n', "api/item": b"item-body\n"}
PATHS = ["/api/users.json", "/api/item", "/api/item?x=1", "/hello", "/api/users.json"]


@dataclass
class Pair:
    lab: Lab
    ns: Netns
    a_port: int
    b_port: int
    a: subprocess.Popen[Any]
    b: subprocess.Popen[Any]


def _nginx(lab: Lab, ns: Netns, port: int, extra: str, files: dict[str, bytes]) -> Any:
    root = Path(tempfile.mkdtemp(prefix="nodetap-mocks-"))
    root.chmod(0o755)
    for name, data in files.items():
        (root / "www" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "www" / name).write_bytes(data)
    (root / "www").mkdir(exist_ok=True)
    conf = root / "nginx.conf"
    conf.write_text(NGINX_CONF.format(workers=1, root=root, port=port, extra=extra))
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    proc = lab.popen(ns, [nginx, "-c", str(conf), "-p", str(root), "-e", str(root / "error.log")])
    for _ in range(100):
        if (
            lab.run(
                ns, ["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{port}/"], check=False
            ).returncode
            == 0
        ):
            break
        time.sleep(0.05)
    return proc


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[tuple[Pair, Path]]:
    with Lab() as lab:
        ns = lab.netns("mocks")
        a_port, b_port = free_port(), free_port()
        b = _nginx(lab, ns, b_port, "", API)
        a = _nginx(lab, ns, a_port, PROXY.format(b=b_port), {})
        pair = Pair(lab, ns, a_port, b_port, a, b)
        with live_capture(ports=[a_port, b_port]) as lc:
            urls = [f"http://127.0.0.1:{a_port}{p}" for p in PATHS]
            lab.run(ns, ["curl", "-sS", *(["-o", "/dev/null"] * len(urls)), *urls])
            lc.wait_for(len(PATHS), where=lambda p: p.server.port == a_port and p.direction == 1)
            lc.wait_for(4, where=lambda p: p.server.port == b_port and p.direction == 2)
            lc.settle()
        cap = tmp_path / "ab.jsonl"
        with cap.open("w") as f:
            for p in lc.pairs:
                jsonl.write(f, p)
        b.send_signal(signal.SIGQUIT)  # B stops: the replay must never need it
        b.wait(timeout=10)
        try:
            yield pair, cap
        finally:
            _cli("netsetup", "--netns", ns.name, "clean", "--all")


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _status(ns: Netns) -> list[dict[str, Any]]:
    r = _cli("netsetup", "--netns", ns.name, "--json", "status")
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["rules"]  # type: ignore[no-any-return]


@pytest.mark.netns
@pytest.mark.bpf
def test_replay_with_mocks_needs_no_dependency(proxied: tuple[Pair, Path], tmp_path: Path) -> None:
    pair, cap = proxied
    target = f"http://127.0.0.1:{pair.a_port}"
    base = ["replay", str(cap), "--target", target, "--netns", pair.ns.name, "--no-progress"]
    rep = tmp_path / "r.json"
    r = _cli(*base, "--mocks", "--sut-pid", str(pair.a.pid), "--report", str(rep),
             "--fail-on", "errors,mismatches,unmatched-mocks")  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads(rep.read_text())
    assert report["requests"]["sent"] == len(PATHS)  # A's side only: one copy per exchange
    assert report["comparison"]["mismatched"] == 0 and report["errors"]["total"] == 0
    mocks = report["mocks"]
    assert mocks["unmatched"] == 0 and mocks["served"] == 4 == mocks["recorded"]
    assert mocks["by_dependency"] == {
        f"127.0.0.1:{pair.b_port}": {"recorded": 4, "served": 4, "unmatched": 0}
    }
    assert f"connections to 127.0.0.1:{pair.b_port}" in r.stderr
    assert _status(pair.ns) == []  # the redirect is gone with the replay
    # without --mocks, B is missed: A answers 502 where 200 was recorded
    r = _cli(*base, "--report", str(rep), "--fail-on", "mismatches")
    assert r.returncode == 3, r.stdout + r.stderr
    report = json.loads(rep.read_text())
    assert report["comparison"]["mismatched"] == 4 and report["requests"]["statuses"]["502"] == 4


@pytest.mark.netns
@pytest.mark.bpf
def test_sigkilled_replay_leaves_rules_that_clean_removes(proxied: tuple[Pair, Path]) -> None:
    pair, cap = proxied
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "replay", str(cap), "--target",
         f"http://127.0.0.1:{pair.a_port}", "--netns", pair.ns.name, "--no-progress",
         "--mocks", "--sut-pid", str(pair.a.pid), "--rate", "2/s", "--loop", "--duration", "60"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        rules: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not rules:
            time.sleep(0.2)
            rules = _status(pair.ns)
        assert rules and all(r["comment"] == f"nodetap:mocks:{proc.pid}" for r in rules), rules
        assert rules[0]["chain"] == "mocks"
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert _status(pair.ns) != []  # a SIGKILL leaves them ...
    r = _cli("netsetup", "--netns", pair.ns.name, "clean")
    assert r.returncode == 0, r.stderr
    assert _status(pair.ns) == []  # ... and clean removes them
