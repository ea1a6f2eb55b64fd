"""`replay --mocks` serving gRPC: in a network namespace of the test's own, nginx A (h2c,
grpc_pass) proxies gRPC calls to a grpcio server B; both sides are captured; B is stopped;
the replay against A answers A's calls to B from the recording (the responder's HTTP/2 side,
reached through the nft redirect in A's namespace)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from nodetap import jsonl
from nodetap.v1 import rrpair_pb2 as pb
from tests.support.capture import live_capture
from tests.support.lab import Lab, Netns
from tests.support.servers import NGINX_CONF, free_port

pytestmark = [pytest.mark.netns, pytest.mark.bpf, pytest.mark.root]
ROOT = Path(__file__).resolve().parents[2]
ECHO = [sys.executable, "-m", "tests.support.peers.grpc_echo"]


def _wait(lab: Lab, ns: Netns, port: int) -> None:
    probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), 1).close()"
    for _ in range(200):
        if lab.run(ns, [sys.executable, "-c", probe], check=False).returncode == 0:
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port} in {ns.name}")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=180
    )


def test_replay_with_grpc_mocks(tmp_path: Path) -> None:
    with Lab() as lab:
        ns = lab.netns("gmocks")
        a_port, b_port = free_port(), free_port()
        b = lab.popen(ns, [*ECHO, "serve", str(b_port)], cwd=ROOT)
        _wait(lab, ns, b_port)
        root = Path(tempfile.mkdtemp(prefix="nodetap-grpc-mocks-"))
        root.chmod(0o755)
        (root / "www").mkdir()
        conf = NGINX_CONF.replace("listen 127.0.0.1:{port};", "listen 127.0.0.1:{port} http2;")
        extra = f"location /test.Echo/ {{ grpc_pass grpc://127.0.0.1:{b_port}; }}"
        (root / "nginx.conf").write_text(
            conf.format(workers=1, root=root, port=a_port, extra=extra)
        )
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        a = lab.popen(ns, [nginx, "-c", str(root / "nginx.conf"), "-p", str(root)])
        try:
            _wait(lab, ns, a_port)
            with live_capture(ports=[a_port, b_port]) as lc:
                lab.run(ns, [*ECHO, "calls", str(a_port)], timeout=120)  # through A to B

                def at(port: int, d: int) -> Callable[[pb.RRPair], bool]:
                    return lambda p: (
                        p.l7protocol == "grpc" and p.server.port == port and p.direction == d
                    )

                lc.wait_for(6, where=at(a_port, pb.INBOUND))
                lc.wait_for(6, where=at(b_port, pb.OUTBOUND))
                lc.settle()
            cap = tmp_path / "ab.jsonl"
            with cap.open("w") as f:
                for p in lc.pairs:
                    jsonl.write(f, p)
            b.send_signal(signal.SIGTERM)  # B stops: the replay must never need it
            b.wait(timeout=10)
            rep = tmp_path / "r.json"
            base = ["replay", str(cap), "--target", f"http://127.0.0.1:{a_port}",
                    "--netns", ns.name, "--no-progress", "--report", str(rep)]  # fmt: skip
            r = _cli(*base, "--mocks", "--sut-pid", str(a.pid),
                     "--fail-on", "errors,mismatches,unmatched-mocks")  # fmt: skip
            assert r.returncode == 0, r.stdout + r.stderr
            report = json.loads(rep.read_text())
            assert report["requests"]["sent"] == 6 and report["errors"]["total"] == 0
            assert report["comparison"]["mismatched"] == 0, report["comparison"]["samples"]
            mocks = report["mocks"]
            assert mocks["served"] == 6 == mocks["recorded"] and mocks["unmatched"] == 0, mocks
            # without --mocks, B is missed: every call fails at A (UNAVAILABLE or 502)
            r = _cli(*base, "--fail-on", "mismatches")
            assert r.returncode == 3, r.stdout + r.stderr
        finally:
            a.send_signal(signal.SIGQUIT)
            a.wait(timeout=10)
            _cli("netsetup", "--netns", ns.name, "clean", "--all")
