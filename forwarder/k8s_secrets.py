"""The forwarder's credentials on Kubernetes, generated at install: a TLS certificate (signed by
a CA made for this installation) and a bearer token, kept in two Secrets.

Run once by the install Job (daemonset/base/secrets-job.yaml, `nodetap k8s-secrets`). A Secret
that exists already is kept (rerunning the Job, or cert-manager / an operator's own Secret,
wins). The CA's private key is not kept anywhere: to rotate, delete both Secrets and rerun.

- ``nodetap-forwarder-tls``: ``tls.crt``, ``tls.key`` (the forwarder's), ``ca.crt`` (what the
  agents and clients verify it with)
- ``nodetap-token``: ``token`` (32 random bytes, URL-safe base64)
- ``nodetap-replay-agent-tls``: the replay agents' certificate (name ``nodetap-replay-agent``)
- ``nodetap-redaction-key``: ``redaction.key`` (32 random bytes, hex), the key of the redaction
  tokens that every agent mounts, so that a secret becomes the same token on every node
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import logging
import secrets
from pathlib import Path
from typing import Any

from nodetap.errors import ConfigError, HostError

log = logging.getLogger(__name__)

SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def dns_names(service: str, namespace: str) -> list[str]:
    """Every name a client in the cluster may use for the Service."""
    return [
        service,
        f"{service}.{namespace}",
        f"{service}.{namespace}.svc",
        f"{service}.{namespace}.svc.cluster.local",
        "localhost",
    ]


def make_tls(service: str, namespace: str, days: int = 3650) -> dict[str, bytes]:
    """A fresh CA and a server certificate for the Service: ca.crt, tls.crt, tls.key (PEM)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    until = now + datetime.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"nodetap CA ({namespace})")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names(service, namespace)]
    sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, service)]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(until)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return {
        "ca.crt": ca.public_bytes(pem),
        "tls.crt": cert.public_bytes(pem),
        "tls.key": key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    }


def make_token() -> str:
    return secrets.token_urlsafe(32)


def make_redaction_key() -> bytes:
    """What agent/rules/key.py reads: 32 random bytes as hex, one line."""
    return secrets.token_hex(32).encode() + b"\n"


def namespace_of_pod() -> str:
    try:
        return SA_NAMESPACE.read_text().strip()
    except OSError:
        raise ConfigError(
            "not in a pod (no service-account namespace file); give --namespace"
        ) from None


def _core_api() -> Any:
    from kubernetes import client, config

    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        try:
            config.load_kube_config()  # type: ignore[no-untyped-call]
        except Exception as e:
            raise HostError(f"no Kubernetes API credentials ({e}); run in the cluster") from None
    return client.CoreV1Api()


def ensure_secret(api: Any, namespace: str, name: str, data: dict[str, bytes], kind: str) -> bool:
    """Create the Secret unless it exists; True when created."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    body = client.V1Secret(
        metadata=client.V1ObjectMeta(
            name=name,
            labels={"app.kubernetes.io/part-of": "nodetap", "app.kubernetes.io/name": "nodetap"},
        ),
        type=kind,
        data={k: base64.b64encode(v).decode() for k, v in data.items()},
    )
    try:
        api.create_namespaced_secret(namespace, body)
    except ApiException as e:
        if e.status == 409:
            log.info("secret %s/%s exists: kept", namespace, name)
            return False
        raise HostError(f"cannot create secret {namespace}/{name}: {e.status} {e.reason}") from None
    return True


def ensure_all(
    namespace: str,
    service: str = "nodetap-forwarder",
    tls_secret: str = "nodetap-forwarder-tls",
    token_secret: str = "nodetap-token",
    api: Any = None,
    replay_tls_secret: str = "nodetap-replay-agent-tls",
    redaction_key_secret: str = "nodetap-redaction-key",
) -> dict[str, bool]:
    """Create the Secrets that do not exist yet: {secret name: created}. Besides the
    forwarder's TLS and token, a certificate for the replay agents (name
    ``nodetap-replay-agent``: they run on the host network, so clients verify them by that name
    with their CA, not by the node's address), and the redaction key every agent shares."""
    api = api if api is not None else _core_api()
    return {
        tls_secret: ensure_secret(
            api, namespace, tls_secret, make_tls(service, namespace), "kubernetes.io/tls"
        ),
        token_secret: ensure_secret(
            api, namespace, token_secret, {"token": make_token().encode()}, "Opaque"
        ),
        replay_tls_secret: ensure_secret(
            api,
            namespace,
            replay_tls_secret,
            make_tls("nodetap-replay-agent", namespace),
            "kubernetes.io/tls",
        ),
        redaction_key_secret: ensure_secret(
            api,
            namespace,
            redaction_key_secret,
            {"redaction.key": make_redaction_key()},
            "Opaque",
        ),
    }
