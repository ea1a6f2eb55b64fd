"""Python clients of the TLS tests, run as processes of their own:

    python -m tests.tls.py_client keepalive PORT [CAFILE]   # http.client, one connection
    python -m tests.tls.py_client short-reads PORT CAFILE   # SSL_read of 5 bytes at a time
    python -m tests.tls.py_client resume PORT CAFILE        # a second connection resumes
    python -m tests.tls.py_client resume-later PORT CAFILE  # the same, a second after start

Over TLS (Python's ssl, Debian's OpenSSL 3) when CAFILE is given. Prints JSON.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import socket
import ssl
import sys
import time

from tests.tls.tls_env import UPLOAD


def keepalive(port: int, ctx: ssl.SSLContext | None) -> list[tuple[int, bytes]]:
    """Requests on one keep-alive connection with http.client (Python's ssl with ctx): a GET,
    a 1 MiB POST body written in 64 KiB pieces, a 1 MiB POST body in one write, the 1 MiB
    file."""
    if ctx is None:
        conn: http.client.HTTPConnection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    else:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=30, context=ctx)
    out = []
    try:
        conn.request("GET", "/a.txt", headers={"X-Test": "one"})
        r = conn.getresponse()
        out.append((r.status, r.read()))
        conn.putrequest("POST", "/echo")
        conn.putheader("Content-Length", str(len(UPLOAD)))
        conn.putheader("Content-Type", "application/octet-stream")
        conn.endheaders()
        for i in range(0, len(UPLOAD), 65536):  # SSL_write in pieces
            conn.send(UPLOAD[i : i + 65536])
        r = conn.getresponse()
        out.append((r.status, r.read()))
        conn.request("POST", "/echo", body=UPLOAD)  # one SSL_write of 1 MiB
        r = conn.getresponse()
        out.append((r.status, r.read()))
        conn.request("GET", "/big.bin")
        r = conn.getresponse()
        out.append((r.status, r.read()))
    finally:
        conn.close()
    return out


def short_reads(port: int, ctx: ssl.SSLContext) -> bytes:
    """GET /a.txt with the answer read 5 bytes at a time (SSL_read served from OpenSSL's
    buffer, without a syscall); returns what was read."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    with raw, ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
        s.sendall(b"GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        got = b""
        while True:
            piece = s.recv(5)
            if not piece:
                return got
            got += piece


def resumed(port: int, ctx: ssl.SSLContext) -> list[tuple[bool, str]]:
    """Three connections, each GET /a.txt then closed; the second and third resume the
    first's TLS session (an abbreviated handshake: no certificate, no renegotiation).
    Returns (session reused, answer) per connection."""
    session = None
    out = []
    for _ in range(3):
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        with raw, ctx.wrap_socket(raw, server_hostname="127.0.0.1", session=session) as s:
            s.sendall(b"GET /a.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            got = b""
            while piece := s.recv(65536):
                got += piece
            out.append((bool(s.session_reused), got.decode("latin-1")))
            session = session or s.session  # TLS 1.3: the ticket came with the answer
    return out


def big_post(port: int, ctx: ssl.SSLContext, size: int) -> int:
    """POST size bytes in one SSL_write; returns the status."""
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=60, context=ctx)
    try:
        conn.request("POST", "/echo", body=bytes(range(256)) * (size // 256))
        r = conn.getresponse()
        r.read()
        return r.status
    finally:
        conn.close()


def main(argv: list[str]) -> None:
    what, port = argv[0], int(argv[1])
    ctx = ssl.create_default_context(cafile=argv[2]) if len(argv) > 2 else None
    if what == "keepalive":
        got = keepalive(port, ctx)
        print(json.dumps([[st, hashlib.sha256(body).hexdigest()] for st, body in got]))
    elif what.startswith("post-"):  # post-SIZE: one SSL_write of SIZE bytes
        assert ctx is not None
        print(json.dumps(big_post(port, ctx, int(what[5:]))))
    elif what in ("resume", "resume-later"):
        assert ctx is not None
        if what == "resume-later":
            time.sleep(1)
        print(json.dumps(resumed(port, ctx)))
    elif what == "short-reads":
        assert ctx is not None
        print(json.dumps(short_reads(port, ctx).decode("latin-1")))
    else:
        raise SystemExit(f"unknown client {what}")


if __name__ == "__main__":
    main(sys.argv[1:])
