"""An executable that links OpenSSL statically (built here from static_client.c with
Debian's libssl.a) is hooked through its own symbols (issue 21: "statically linked
OpenSSL/BoringSSL when the executable has the symbols")."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from nodetap.v1 import rrpair_pb2 as pb
from tests.support.capture import live_capture
from tests.tls.tls_env import FILES, TlsNginx

pytestmark = [pytest.mark.bpf, pytest.mark.root]

HERE = Path(__file__).parent


def _build(out: Path) -> Path:
    subprocess.run(
        [shutil.which("gcc") or "gcc", "-O1", "-o", str(out), str(HERE / "static_client.c"),
         "-Wl,-Bstatic", "-lssl", "-lcrypto", "-Wl,-Bdynamic", "-ldl", "-lpthread"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    return out


def test_statically_linked_openssl_is_hooked_in_the_executable(
    site: TlsNginx, tmp_path: Path
) -> None:
    exe = _build(tmp_path / "static_client")
    # the client waits for a line before connecting: the capture (pid filter) hooks it first
    client = subprocess.Popen(
        [str(exe), str(site.tls_port), "/a.txt"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        with live_capture(pids=[client.pid], tls_rescan_interval=0.3) as lc:
            assert lc.cap.tls is not None
            rows = lc.cap.tls.table()
            out, _ = client.communicate(b"go\n", timeout=60)
            (pair,) = lc.wait_for(1)
            summary = lc.cap.summary()
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
    assert client.returncode == 0 and int(out) > len(FILES["a.txt"])
    (row,) = [r for r in rows if r.pid == client.pid]
    assert (row.library, row.state) == ("openssl-static", "hooked"), row
    assert row.target is not None and row.target.path == f"/proc/{client.pid}/exe"
    assert pair.direction == pb.OUTBOUND and pair.meta.source == "tls"
    assert pair.http.req.url == "/a.txt" and pair.http.res.body == FILES["a.txt"]
    assert summary["tls_calls"] >= 2, summary
