"""Replay of HTTP/1.x pairs to an https:// target: every request over TLS, the certificate
verified (--target-ca, else the system store). Peer: Debian's nginx serving the same site on
a plaintext port and a TLS port (tests/tls/tls_env.py), a certificate made with openssl.

A request sent in plaintext to nginx's TLS port gets 400 ("The plain HTTP request was sent
to HTTPS port"): the replay matching the recording (200s) proves it went over TLS.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.replay.helpers import record
from tests.tls.tls_env import Cert, TlsNginx, make_cert, tls_nginx

ROOT = Path(__file__).resolve().parents[2]
REQUESTS = [
    ("GET", "/a.txt", [], b""),
    ("GET", "/big.bin", [], b""),
    ("POST", "/echo", [("Content-Type", "text/plain")], b"hello " * 1000),
    ("GET", "/hello", [], b""),
    ("GET", "/missing", [], b""),
]


def _replay(cap: Path, target: str, *extra: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    report = cap.parent / "report.json"
    report.unlink(missing_ok=True)
    out = subprocess.run(
        [sys.executable, "-m", "cli", "replay", str(cap), "--target", target, "--no-progress",
         "--processes", "1", "--vusers", "2", "--timeout", "10s", "--report", str(report),
         *extra],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )  # fmt: skip
    return out, report


@pytest.fixture
def site(tmp_path: Path) -> Any:
    cert = make_cert(tmp_path)
    with tls_nginx(cert) as ngx:
        cap = tmp_path / "http1.jsonl"
        assert record("127.0.0.1", ngx.plain_port, REQUESTS, cap) == len(REQUESTS)
        yield cert, ngx, cap


def _error_lines(stderr: str) -> list[str]:
    """The error lines of stderr (the pre-flight lines about conntrack come before)."""
    assert "Traceback" not in stderr, stderr
    return [ln for ln in stderr.splitlines() if ln.startswith("nodetap:")]


def _log_lines(ngx: TlsNginx, at_least: int) -> int:
    return len(ngx.ngx.access_log_lines(at_least))


def test_https_target_replays_http1_over_tls(site: tuple[Cert, TlsNginx, Path]) -> None:
    """Pairs recorded on the plaintext port, replayed to https://...:TLS_PORT with the test's
    CA: every request reaches nginx over TLS and matches (statuses, headers, bodies; the
    1 MiB file by its hash)."""
    cert, ngx, cap = site
    before = _log_lines(ngx, len(REQUESTS))  # the recording's lines, the last one written late
    out, report = _replay(cap, f"https://127.0.0.1:{ngx.tls_port}", "--target-ca", str(cert.cert))
    assert out.returncode == 0, out.stderr
    r: dict[str, Any] = json.loads(report.read_text())
    assert r["requests"]["sent"] == len(REQUESTS) and r["errors"]["total"] == 0, r["errors"]
    assert r["requests"]["statuses"] == {"200": 4, "404": 1}, r["requests"]
    assert r["comparison"]["compared"] == len(REQUESTS)
    assert r["comparison"]["mismatched"] == 0, r["comparison"]["samples"]
    assert _log_lines(ngx, before + len(REQUESTS)) - before == len(REQUESTS)


def test_https_target_also_by_hostname(site: tuple[Cert, TlsNginx, Path]) -> None:
    """https://localhost:PORT: the name is checked against the certificate (SNI sent)."""
    cert, ngx, cap = site
    out, report = _replay(cap, f"https://localhost:{ngx.tls_port}", "--target-ca", str(cert.cert))
    assert out.returncode == 0, out.stderr
    r = json.loads(report.read_text())
    assert r["errors"]["total"] == 0 and r["comparison"]["mismatched"] == 0, r["comparison"]


def test_https_target_that_speaks_plaintext_fails_in_one_line(
    site: tuple[Cert, TlsNginx, Path],
) -> None:
    """https:// to nginx's plaintext port: no silent success, one line naming the cause."""
    cert, ngx, cap = site
    out, report = _replay(cap, f"https://127.0.0.1:{ngx.plain_port}", "--target-ca", str(cert.cert))
    assert out.returncode == 2, out
    lines = _error_lines(out.stderr)
    assert len(lines) == 1, out.stderr
    assert "TLS handshake failed" in lines[0] and "use http://" in lines[0], lines
    assert not report.exists()


def test_https_target_with_an_untrusted_certificate_fails_in_one_line(
    site: tuple[Cert, TlsNginx, Path],
) -> None:
    """Without --target-ca the self-signed certificate is not in the system store: the run
    stops with one line saying so and what to give, nothing is compared."""
    _, ngx, cap = site
    out, report = _replay(cap, f"https://127.0.0.1:{ngx.tls_port}")
    assert out.returncode == 2, out
    lines = _error_lines(out.stderr)
    assert len(lines) == 1, out.stderr
    assert "certificate is not trusted" in lines[0] and "--target-ca" in lines[0], lines
    assert not report.exists()
