"""nginx serving HTTPS with Debian's OpenSSL 3 to curl and to Python's ssl with keep-alive:
the RRPairs of the TLS run are those of a cleartext run of the same requests, from both
sides, with meta.source "tls" (issue 21)."""

from __future__ import annotations

import hashlib
from collections import Counter
from typing import cast

import pytest

from nodetap.v1 import rrpair_pb2 as pb
from tests.support.capture import live_capture
from tests.tls.tls_env import (
    BIG,
    FILES,
    UPLOAD,
    Cert,
    TlsNginx,
    curl,
    essence,
    python_client,
)

pytestmark = [pytest.mark.bpf, pytest.mark.root]

CURL_PATHS = ["/a.txt", "/hello", "/status/204", "/big.bin"]
# per client run: curl's 4 requests, the Python client's 4, from both sides
PER_RUN = 2 * (len(CURL_PATHS) + 4)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _run(cert: Cert | None, port: int) -> None:
    curl(port, cert, CURL_PATHS)
    got = python_client("keepalive", port, cert)
    echo = _sha(b"echo\n")
    assert got == [[200, _sha(FILES["a.txt"])], [200, echo], [200, echo], [200, _sha(BIG)]]


def test_tls_rrpairs_match_cleartext_both_sides(site: TlsNginx, cert: Cert) -> None:
    with live_capture(ports=[site.plain_port, site.tls_port]) as lc:
        assert lc.cap.tls is not None
        _run(None, site.plain_port)
        plain = lc.wait_for(PER_RUN, timeout=30, where=lambda p: p.server.port == site.plain_port)
        _run(cert, site.tls_port)
        tls = lc.wait_for(PER_RUN, timeout=30, where=lambda p: p.server.port == site.tls_port)
        lc.settle()
        summary = lc.cap.summary()
        table = lc.cap.tls.table()
    assert len(plain) == len(tls) == PER_RUN, summary
    assert {p.meta.source for p in plain} == {"syscall"}
    assert {p.meta.source for p in tls} == {"tls"}
    assert Counter(p.direction for p in tls) == {
        pb.INBOUND: PER_RUN // 2,
        pb.OUTBOUND: PER_RUN // 2,
    }
    assert Counter(map(essence, tls)) == Counter(map(essence, plain))
    uploads = [p for p in tls if p.http.req.method == "POST"]
    assert len(uploads) == 4 and all(p.http.req.body == UPLOAD for p in uploads)
    assert all(not p.flags for p in tls), [list(p.flags) for p in tls]
    # the ciphertext was counted, not copied, and no TLS connection was taken for not-HTTP
    assert summary["tls_cipher_bytes"] > 4 * len(BIG), summary
    assert summary["conns_not_http"] == 0, summary
    assert summary["drop_tls_truncated_bytes"] == 0, summary
    nginx_rows = [r for r in table if r.pid in site.pids()]
    assert nginx_rows and all(r.library == "openssl" and r.state == "hooked" for r in nginx_rows)
    assert all(r.reason.endswith("libssl.so.3") for r in nginx_rows), nginx_rows


def test_short_ssl_reads_come_out_whole(site: TlsNginx, cert: Cert) -> None:
    """SSL_read(5) served from OpenSSL's buffer makes no syscall: tied by its SSL*."""
    with live_capture(ports=[site.tls_port]) as lc:
        got = str(python_client("short-reads", site.tls_port, cert)).encode("latin-1")
        pairs = lc.wait_for(1, where=lambda p: p.direction == pb.OUTBOUND)
        lc.wait_for(1, where=lambda p: p.direction == pb.INBOUND)
        summary = lc.cap.summary()
    assert got.endswith(FILES["a.txt"])
    (out,) = pairs
    assert out.meta.source == "tls"
    assert out.http.res.status_code == 200 and out.http.res.body == FILES["a.txt"]
    assert not out.flags, list(out.flags)
    assert summary["tls_calls"] > len(got) // 5, summary  # one per 5-byte SSL_read at least


def test_large_ssl_write_copied_whole_past_one_program(site: TlsNginx, cert: Cert) -> None:
    """A 5 MiB body in one SSL_write: past one program's 72 pieces, the tail calls copy it."""
    size = 5 << 20
    with live_capture(ports=[site.tls_port], max_body=8 << 20) as lc:
        assert python_client(f"post-{size}", site.tls_port, cert) == 200
        (p,) = lc.wait_for(1, timeout=30, where=lambda p: p.direction == pb.INBOUND)
        summary = lc.cap.summary()
    assert p.meta.source == "tls" and not p.flags, list(p.flags)
    assert p.http.req.body == bytes(range(256)) * (size // 256)
    assert summary["drop_tls_truncated_bytes"] == 0, summary


def test_ssl_write_past_the_body_bound_is_truncated(site: TlsNginx, cert: Cert) -> None:
    """--max-body applies to plaintext as to cleartext: the rest is not copied (counted)."""
    size = 3 << 20
    with live_capture(ports=[site.tls_port], max_body=256 << 10) as lc:
        assert python_client(f"post-{size}", site.tls_port, cert) == 200
        (p,) = lc.wait_for(1, timeout=30, where=lambda p: p.direction == pb.INBOUND)
        summary = lc.cap.summary()
    assert p.meta.source == "tls" and "truncated" in p.flags, list(p.flags)
    assert p.http.req.body_size == size and len(p.http.req.body) == 256 << 10
    assert summary["bound_skipped_bytes"] > 0 and summary["drop_tls_truncated_bytes"] == 0


def test_resumed_sessions_come_out_like_full_handshakes(site: TlsNginx, cert: Cert) -> None:
    """A TLS session resumed on new connections (session tickets, no renegotiation): the
    abbreviated handshake carries no certificate, and each connection's plaintext comes out
    as its own RRPair, both sides, the same as the first connection's."""
    with live_capture(ports=[site.tls_port]) as lc:
        got = cast(list[tuple[bool, str]], python_client("resume", site.tls_port, cert))
        pairs = lc.wait_for(6)
        lc.settle()
        summary = lc.cap.summary()
    assert [reused for reused, _ in got] == [False, True, True]
    assert all(ans.endswith(FILES["a.txt"].decode()) for _, ans in got)
    assert len(pairs) == 6 and {p.meta.source for p in pairs} == {"tls"}, summary
    assert Counter(p.direction for p in pairs) == {pb.INBOUND: 3, pb.OUTBOUND: 3}
    assert len({p.meta.conn_id for p in pairs}) == 6  # three connections, two sides
    for p in pairs:
        assert (p.http.req.method, p.http.req.url, p.http.res.status_code) == ("GET", "/a.txt", 200)
        assert p.http.res.body == FILES["a.txt"] and not p.flags, list(p.flags)
    assert summary["tls_untied_calls"] == 0 and summary["conns_not_http"] == 0, summary
