"""No anonymous access off loopback (issue 22): the forwarder refuses to listen off loopback
without TLS and a token unless --insecure (warned); a client without the token, in another
network namespace, can neither read, snapshot nor ingest."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from forwarder.listen_policy import is_loopback
from tests.forwarder.pki import make_pki

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "listen-policy-token-7f3a"


def test_loopback_forms() -> None:
    for listen in ("127.0.0.1:7070", "127.9.8.7:1", "[::1]:7070", "localhost:7070"):
        assert is_loopback(listen), listen
    for listen in ("0.0.0.0:7070", ":7070", "7070", "[::]:7070", "10.1.2.3:7070", "fwd:7070"):
        assert not is_loopback(listen), listen


def _forwarder(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "cli", "forwarder", "--data-dir", str(tmp_path / "d"), *extra]
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_plaintext_off_loopback_refused(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    for extra in ([], ["--token-file", str(token)]):  # no TLS, no token / a token but no TLS
        r = _forwarder(tmp_path, "--listen", "0.0.0.0:0", *extra)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "refusing to listen on" in lines[0], r.stderr
        assert "--insecure" in lines[0]


def test_insecure_is_warned_in_log_and_metric(tmp_path: Path) -> None:
    from forwarder import listen_policy
    from forwarder.server import serve

    h = serve("0.0.0.0:0", str(tmp_path / "d"), insecure=True)
    try:
        assert listen_policy.INSECURE._value.get() == 1
    finally:
        h.stop(0)
    h = serve("127.0.0.1:0", str(tmp_path / "d"))
    try:
        assert listen_policy.INSECURE._value.get() == 0
    finally:
        h.stop(0)
    argv = [sys.executable, "-m", "cli", "forwarder", "--listen", "0.0.0.0:0", "--insecure"]
    proc = subprocess.Popen(
        [*argv, "--data-dir", str(tmp_path / "d2")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert "listening on" in proc.stdout.readline()
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert "INSECURE" in err and "without TLS and a token" in err


@pytest.mark.root
@pytest.mark.netns
def test_unauthenticated_client_from_another_namespace_refused(tmp_path: Path) -> None:
    from tests.support.lab import Lab

    with Lab() as lab:
        fns, cns = lab.netns("fwd"), lab.netns("cli")
        link = lab.link(cns, fns)  # client a_ip <-> forwarder b_ip
        pki = make_pki(tmp_path / "pki", names=("server",), ips=(link.b_ip,))
        token = tmp_path / "token"
        token.write_text(TOKEN)
        port = 7070
        data = tmp_path / "data"
        base = [sys.executable, "-m", "cli", "forwarder", "--listen", f"{link.b_ip}:{port}"]
        # plaintext, no token (what the manifests shipped): refused, one line
        r = subprocess.run(
            lab.argv(fns, [*base, "--data-dir", str(data)]),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 2 and "refusing to listen" in r.stderr, r.stderr
        secure = [
            "--token-file",
            str(token),
            "--tls-cert",
            str(pki / "server.crt"),
            "--tls-key",
            str(pki / "server.key"),
        ]
        lab.popen(fns, [*base, "--data-dir", str(data), *secure], cwd=ROOT)
        deadline = time.monotonic() + 30
        while lab.run(fns, ["ss", "-ltn"], check=False).stdout.find(f":{port}") < 0:
            assert time.monotonic() < deadline, "forwarder did not start in its namespace"
            time.sleep(0.1)
        addr = f"{link.b_ip}:{port}"

        def client(*argv: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                lab.argv(cns, [sys.executable, "-m", "cli", *argv]),
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=60,
            )

        tls = ["--forwarder", addr, "--tls-ca", str(pki / "ca.crt")]
        # the token holder stores a pair and reads it back
        forged = tmp_path / "forged.py"
        forged.write_text(_FORGE.format(root=str(ROOT)))

        def forge(*argv: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                lab.argv(cns, [sys.executable, str(forged), addr, str(pki / "ca.crt"), *argv]),
                cwd=ROOT,
                capture_output=True,
                text=True,
                timeout=60,
            )

        ok = forge(TOKEN)
        assert ok.stdout.strip() == "OK", ok.stdout + ok.stderr
        assert client("export", *tls, "--token-file", str(token)).stdout.count("/admin") == 1
        # without the token: refused everywhere, nothing read, nothing written
        r = forge("")
        assert r.stdout.strip() == "UNAUTHENTICATED", r.stdout + r.stderr
        r = forge("wrong-token")
        assert r.stdout.strip() == "UNAUTHENTICATED", r.stdout + r.stderr
        for argv in (["export", *tls], ["snapshot", "create", *tls], ["snapshot", "list", *tls]):
            r = client(*argv)
            assert r.returncode != 0 and "/admin" not in r.stdout, (argv, r.stdout, r.stderr)
            assert "token" in r.stderr, (argv, r.stderr)
        # plaintext towards the TLS port gets nothing either
        r = client("export", "--forwarder", addr)
        assert r.returncode != 0 and "/admin" not in r.stdout
        r = client("export", *tls, "--token-file", str(token))
        assert r.stdout.count("/admin") == 1  # only the token holder's pair was stored


# A client written against the gRPC API: Ingest one forged RRPair with the given token.
_FORGE = """
import sys
sys.path.insert(0, {root!r})
import grpc
from nodetap import transport
from nodetap.v1 import forwarder_pb2 as fpb, forwarder_pb2_grpc as fgrpc, rrpair_pb2 as pb
addr, ca, token = sys.argv[1], sys.argv[2], sys.argv[3]
ch = transport.channel(addr, tls=transport.ClientTLS(ca))
pair = pb.RRPair(id="forged-" + (token or "none"))
pair.http.req.method = "DELETE"
pair.http.req.url = "/admin/users/all"
batch = fpb.IngestBatch(agent_id="intruder-" + (token or "none"), seq=1, pairs=[pair])
try:
    acks = list(fgrpc.ForwarderStub(ch).Ingest(iter([batch]),
                metadata=transport.bearer_metadata(token or None), timeout=20))
    print("OK" if acks and acks[0].stored == 1 else "NOACK")
except grpc.RpcError as e:
    print(e.code().name)
"""
