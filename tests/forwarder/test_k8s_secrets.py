"""The credentials the install Job generates (`nodetap k8s-secrets`): a certificate that
openssl verifies against the generated CA for every name of the Service, and that a real TLS
forwarder serves to the agent's sink with the generated token."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path
from typing import Any

from agent.sinks.forwarder import ForwarderSink
from forwarder import k8s_secrets
from forwarder.server import serve
from nodetap.transport import ClientTLS
from nodetap.v1 import rrpair_pb2 as pb


def test_generated_certificate_verifies_for_every_service_name(tmp_path: Path) -> None:
    files = k8s_secrets.make_tls("nodetap-forwarder", "nodetap")
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    for host in k8s_secrets.dns_names("nodetap-forwarder", "nodetap"):
        r = subprocess.run(
            ["openssl", "verify", "-CAfile", "ca.crt", "-verify_hostname", host, "tls.crt"],
            cwd=tmp_path, capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert r.returncode == 0 and "tls.crt: OK" in r.stdout, (host, r.stdout, r.stderr)
    r = subprocess.run(
        ["openssl", "verify", "-CAfile", "ca.crt", "-verify_hostname", "evil.example", "tls.crt"],
        cwd=tmp_path, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert r.returncode != 0
    token = k8s_secrets.make_token()
    assert len(token) >= 43 and token != k8s_secrets.make_token()
    # a real forwarder with them, and the agent's sink verifying it by the Service's name
    h = serve(
        "127.0.0.1:0",
        str(tmp_path / "data"),
        token=token,
        tls_cert=str(tmp_path / "tls.crt"),
        tls_key=str(tmp_path / "tls.key"),
    )
    try:
        tls = ClientTLS(str(tmp_path / "ca.crt"), server_name="nodetap-forwarder")
        sink = ForwarderSink(f"127.0.0.1:{h.port}", token=token, tls=tls)
        sink.put(pb.RRPair(id="k8s-secrets"))
        assert sink.flush(20)
        sink.close(1)
    finally:
        h.stop(0)


class _Api:
    """Stands in for the Kubernetes API server's Secret creation (create, then 409)."""

    def __init__(self) -> None:
        self.made: dict[str, Any] = {}

    def create_namespaced_secret(self, namespace: str, body: Any) -> None:
        from kubernetes.client.exceptions import ApiException

        if body.metadata.name in self.made:
            raise ApiException(status=409, reason="AlreadyExists")
        self.made[body.metadata.name] = body


def test_existing_secrets_are_kept() -> None:
    api = _Api()
    assert k8s_secrets.ensure_all("nodetap", api=api) == {
        "nodetap-forwarder-tls": True,
        "nodetap-token": True,
        "nodetap-replay-agent-tls": True,
        "nodetap-redaction-key": True,
    }
    first = api.made["nodetap-token"].data["token"]
    assert set(api.made["nodetap-forwarder-tls"].data) == {"ca.crt", "tls.crt", "tls.key"}
    assert api.made["nodetap-forwarder-tls"].type == "kubernetes.io/tls"
    assert k8s_secrets.ensure_all("nodetap", api=api) == {
        "nodetap-forwarder-tls": False,
        "nodetap-token": False,
        "nodetap-replay-agent-tls": False,
        "nodetap-redaction-key": False,
    }
    assert api.made["nodetap-token"].data["token"] == first
    key = base64.b64decode(api.made["nodetap-redaction-key"].data["redaction.key"])
    assert len(key.strip()) == 64 and int(key, 16) and key.endswith(b"\n")
