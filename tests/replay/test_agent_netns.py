"""The replay agent on a pod-network-like address, reached from another network namespace
(issue 22): without TLS and a token it does not start; with them, a client without the token
(or without TLS) is refused, and one with both is served. Real namespaces and veths (the lab),
a certificate made by openssl, grpcio as the client."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support.lab import Lab

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "netns-token"

CLIENT = textwrap.dedent(
    """
    import sys
    import grpc
    from nodetap import transport
    from nodetap.v1 import replay_pb2 as rpb, replay_pb2_grpc as rgrpc
    addr, ca, token = sys.argv[1], sys.argv[2], sys.argv[3]
    tls = transport.ClientTLS(ca) if ca != "-" else None
    with transport.channel(addr, tls=tls, keepalive=False) as ch:
        stub = rgrpc.ReplayAgentStub(ch)
        try:
            r = stub.Stop(rpb.StopRequest(run_id="x"),
                          metadata=transport.bearer_metadata(token if token != "-" else None),
                          timeout=10)
            print("OK", r.stopped)
        except grpc.RpcError as e:
            print(e.code().name)
    """
)


def _cert(tmp: Path, ip: str) -> tuple[Path, Path]:
    cert, key = tmp / "agent.pem", tmp / "agent.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=replay-agent", "-addext", f"subjectAltName=IP:{ip}",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


@pytest.mark.netns
@pytest.mark.root
def test_unauthenticated_client_from_another_namespace_is_refused(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    with Lab() as lab:
        agent_ns, attacker = lab.netns("agent"), lab.netns("attacker")
        link = lab.link(attacker, agent_ns)
        addr = f"{link.b_ip}:7070"
        token = tmp_path / "token"
        token.write_text(TOKEN)
        base = [sys.executable, "-m", "cli", "replay-agent", "--listen", addr]
        base += ["--allow-target", "127.0.0.1"]
        bare = subprocess.run(
            lab.argv(agent_ns, base), capture_output=True, text=True, timeout=60, cwd=ROOT
        )
        assert bare.returncode == 2 and "without TLS and a token" in bare.stderr
        cert, key = _cert(tmp_path, link.b_ip)
        lab.popen(
            agent_ns,
            [*base, "--token-file", str(token), "--tls-cert", str(cert), "--tls-key", str(key)],
            cwd=ROOT,
            env={**env, "TMPDIR": str(tmp_path)},
            stderr=subprocess.DEVNULL,
        )
        wait = (
            "import socket, sys, time\n"
            "for _ in range(150):\n"
            "    try:\n"
            "        socket.create_connection((sys.argv[1], 7070), 1).close(); break\n"
            "    except OSError: time.sleep(0.2)\n"
        )
        lab.run(attacker, [sys.executable, "-c", wait, link.b_ip], timeout=60)

        def call(ca: str, tok: str) -> str:
            out = subprocess.run(
                lab.argv(attacker, [sys.executable, "-c", CLIENT, addr, ca, tok]),
                capture_output=True, text=True, timeout=60, env=env, cwd=ROOT,
            )  # fmt: skip
            return out.stdout.strip() or out.stderr

        assert call(str(cert), "-") == "UNAUTHENTICATED"
        assert call(str(cert), "wrong-token") == "UNAUTHENTICATED"
        assert call("-", TOKEN) == "UNAVAILABLE"  # plaintext: no TLS handshake, no service
        assert call(str(cert), TOKEN) == "OK False"  # authenticated: served (no such run)
