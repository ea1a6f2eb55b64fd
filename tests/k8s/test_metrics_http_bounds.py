"""The metrics endpoint under slow clients (issue 22): no thread per connection, timeouts that
close a connection that never sends its request, a bound on connections that keeps probes
answered, keep-alive for scrapers."""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time

import pytest

from nodetap import metrics_http


def _healthz(port: int) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status
    finally:
        conn.close()


def test_slow_connections_cost_no_thread_and_time_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_http, "READ_TIMEOUT", 2.0)
    with metrics_http.serve("127.0.0.1:0") as srv:
        assert _healthz(srv.port) == 200
        threads = threading.active_count()
        slow = []
        try:
            for _ in range(200):  # half a request head each, never finished
                s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
                s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
                slow.append(s)
            time.sleep(0.5)
            assert threading.active_count() <= threads + 2  # was one thread per connection
            assert _healthz(srv.port) == 200  # served meanwhile
            time.sleep(2.5)  # past the read timeout: the server closed them
            closed = 0
            for s in slow:
                s.settimeout(2)
                with contextlib.suppress(ConnectionResetError):
                    if s.recv(100) == b"":
                        closed += 1
                        continue
                closed += 1  # reset counts as closed too
            assert closed == len(slow)
        finally:
            for s in slow:
                s.close()


def test_connection_bound_keeps_probes_answered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics_http, "MAX_CONNECTIONS", 20)
    with metrics_http.serve("127.0.0.1:0") as srv:
        slow = [socket.create_connection(("127.0.0.1", srv.port), timeout=5) for _ in range(60)]
        try:
            time.sleep(0.3)
            for _ in range(5):  # the oldest waiting connection makes room for each probe
                assert _healthz(srv.port) == 200
        finally:
            for s in slow:
                s.close()


def test_keep_alive_and_head_and_bad_requests() -> None:
    with metrics_http.serve("127.0.0.1:0") as srv:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        for path in ("/metrics", "/healthz", "/readyz", "/nope"):
            conn.request("GET", path)
            r = conn.getresponse()
            r.read()
            assert r.status == (404 if path == "/nope" else 200)
        conn.request("HEAD", "/healthz")
        r = conn.getresponse()
        assert r.status == 200 and r.read() == b""
        conn.close()
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
            s.sendall(b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc")
            assert s.recv(100).startswith(b"HTTP/1.1 405")
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
            s.sendall(b"GARBAGE\r\n\r\n")
            assert s.recv(100).startswith(b"HTTP/1.1 400")
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
            s.sendall(b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\n\r\n")  # head too long
            assert s.recv(100).startswith(b"HTTP/1.1 400")
