"""A throwaway certificate authority for TLS tests: a CA, and server and client certificates
it signed (for 127.0.0.1 and localhost), made with the openssl command."""

from __future__ import annotations

import subprocess
from pathlib import Path


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(
    d: Path, names: tuple[str, ...] = ("server", "client"), ips: tuple[str, ...] = ()
) -> Path:
    """ca.crt/ca.key and NAME.crt/NAME.key for each name, in d (created); ips: more addresses
    the certificates are valid for."""
    d.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=nodetap-test-ca",
        cwd=d,
    )
    for name in names:
        _openssl(
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            f"{name}.key",
            "-out",
            f"{name}.csr",
            "-subj",
            f"/CN={name}",
            cwd=d,
        )
        sans = ",".join(f"IP:{ip}" for ip in ("127.0.0.1", *ips))
        (d / f"{name}.ext").write_text(f"subjectAltName={sans},DNS:localhost\n")
        _openssl(
            "x509",
            "-req",
            "-in",
            f"{name}.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            f"{name}.crt",
            "-days",
            "1",
            "-extfile",
            f"{name}.ext",
            cwd=d,
        )
    return d
