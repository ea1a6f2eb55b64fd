"""Cases that need a capture of their own: connections opened before the capture started
(idle, or mid-response), a client and a server in one process, an accepted upgrade, a server
accepting without a sockaddr, and fifty concurrent connections (wrk)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nodetap.v1 import rrpair_pb2 as pb
from tests.capture.clients import Request, wrk
from tests.capture.exchange_env import (
    BIG,
    MIB,
    REPO,
    assert_no_loss,
    both_sides,
    req_bytes,
)
from tests.capture.expect import (
    LOSS_COUNTERS,
    assert_request,
    assert_response,
    hdrs,
)
from tests.capture.py_clients import PausedClient
from tests.capture.raw_client import RawClient, Step, raw_exchange, split_responses
from tests.support.capture import live_capture
from tests.support.servers import free_port, nginx

pytestmark = [pytest.mark.bpf, pytest.mark.root]


# ---- own captures ----------------------------------------------------------------------------


def test_connection_opened_before_capture() -> None:
    """A keep-alive connection opened (and used) before the capture started: the requests
    sent on it afterwards are captured on both sides, flagged "preexisting"."""
    with nginx() as ngx:
        host = f"127.0.0.1:{ngx.port}"
        before = [Request("GET", "/hello?before", [("Host", host)])]
        after = [Request("GET", f"/hello?after={i}", [("Host", host)]) for i in range(3)] + [
            Request("POST", "/echo?after", [("Host", host), ("Content-Length", "2")], b"hi")
        ]
        with (
            PausedClient("127.0.0.1", ngx.port, before, after) as client,
            live_capture(ports=[ngx.port]) as lc,
        ):
            responses = client.resume()
            inb, out = both_sides(lc, client.local_port, len(after), flags=["preexisting"])
            lc.settle()
            assert len(lc.pairs) == 2 * len(after)  # nothing from before the start
            for p_in, p_out, req, res in zip(inb, out, after, responses[1:], strict=True):
                for p in (p_in, p_out):
                    assert_request(p, req.method, req.url, req.headers, req.body)
                    assert_response(p, res)
            assert inb[0].meta.comm == "nginx"
            assert lc.cap.summary()["conns_preexisting"] >= 2
            assert_no_loss(lc)


def test_connection_preexisting_mid_response() -> None:
    """The capture starts while a 2 MiB response is half read: the rest of its body is
    skipped (no message start in it), the next exchange on the connection is captured on
    both sides, flagged "preexisting". (A preexisting stream with no message start in its
    first MiB is given up as not HTTP: RESYNC_FAIL_BYTES in the parser.)"""
    data = BIG + BIG[::-1]
    with nginx(files={"two.bin": data}) as ngx:
        host = f"127.0.0.1:{ngx.port}"
        first = req_bytes("GET", "/two.bin", [("Host", host)])
        after_headers = [("Host", host), ("Connection", "close")]
        after = req_bytes("GET", "/hello?after", after_headers)
        steps: list[Step] = [
            ("send", first),
            ("read", 3 * MIB // 2),
            ("pause", None),
            ("read", 2 * MIB + 100),
            ("send", after),
            ("read", None),
        ]
        with (
            RawClient("127.0.0.1", ngx.port, steps) as client,
            live_capture(ports=[ngx.port]) as lc,
        ):
            run = client.resume()
            inb, out = both_sides(lc, client.local_port, 1, flags=["preexisting"])
            lc.settle()
            assert len(lc.pairs) == 2
            assert_no_loss(lc)
    _head, _, rest = run.received.partition(b"\r\n\r\n")
    assert rest.startswith(data)
    (res,) = split_responses(rest[len(data) :], ["GET"])
    for p in (inb[0], out[0]):
        assert_request(p, "GET", "/hello?after", after_headers, b"")
        assert_response(p, res)
    assert res.body == b"hello world\n"


SELF_CLIENT = """
import http.client, http.server, json, sys, threading
from tests.support.servers import _EchoHandler
srv = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), _EchoHandler)
threading.Thread(target=srv.serve_forever, daemon=True).start()
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=30)
bodies = []
for i in range(3):
    c.request("POST", f"/self/{i}", body=b"x" * i)
    bodies.append(c.getresponse().read().decode())
print(json.dumps({"port": c.sock.getsockname()[1], "bodies": bodies}))
"""


def test_client_and_server_in_one_process() -> None:
    """A process that serves and calls itself: its accepted fd gives INBOUND RRPairs, its
    connected fd OUTBOUND ones, with the same pid, and they agree."""
    port = free_port()
    with live_capture(ports=[port]) as lc:
        proc = subprocess.run(
            [sys.executable, "-c", SELF_CLIENT, str(port)],
            cwd=REPO,
            capture_output=True,
            check=True,
            timeout=60,
        )
        res = json.loads(proc.stdout)
        assert res["bodies"] == ["", "x", "xx"]
        inb, out = both_sides(lc, res["port"], 3)
    for i, (p_in, p_out) in enumerate(zip(inb, out, strict=True)):
        assert p_in.meta.pid == p_out.meta.pid
        assert p_in.http.req.url == f"/self/{i}" and p_in.http.res.body == b"x" * i


UPGRADE_SERVER = r"""
import socket, sys
ls = socket.create_server(("127.0.0.1", int(sys.argv[1])))
print("ready", flush=True)
c, _ = ls.accept()
head = b""
while b"\r\n\r\n" not in head:
    head += c.recv(4096)
c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: nt-echo\r\n\r\n")
while True:  # the new protocol: echo bytes back
    data = c.recv(65536)
    if not data:
        break
    c.sendall(data)
"""


def test_upgrade_accepted_stops_parsing() -> None:
    """101 Switching Protocols: the exchange is captured with flag "upgrade"; the bytes of
    the new protocol after it are neither parsed as HTTP nor counted as errors."""
    port = free_port()
    # the server starts after the capture: an accept() already blocked when the capture
    # starts yields a connection whose addresses come from /proc, too late for one this short
    with live_capture(ports=[port]) as lc:
        server = subprocess.Popen(
            [sys.executable, "-c", UPGRADE_SERVER, str(port)], stdout=subprocess.PIPE
        )
        try:
            assert server.stdout is not None
            assert server.stdout.readline() == b"ready\n"
            head = req_bytes(
                "GET", "/ws", [("Host", "x"), ("Connection", "Upgrade"), ("Upgrade", "nt-echo")]
            )
            frames = b"\x81\x05hello not http\r\n\r\n" * 50
            steps: list[Step] = [
                ("send", head),
                ("read", 75),  # the 101 response
                ("send", frames),
                ("read", 75 + len(frames)),
            ]
            with RawClient("127.0.0.1", port, steps) as client:
                run = client.resume()
            assert run.received.startswith(b"HTTP/1.1 101 ") and run.received.endswith(frames)
            inb, _ = both_sides(lc, run.local_port, 1, flags=["upgrade"])
            lc.settle()
            summary = lc.cap.summary()
        finally:
            server.kill()
            server.wait()
    res = inb[0].http.res
    assert (res.status_code, res.status_message) == (101, "Switching Protocols")
    assert hdrs(res) == [("Connection", "Upgrade"), ("Upgrade", "nt-echo")]
    assert inb[0].http.req.url == "/ws"
    assert len(lc.pairs) == 2
    assert summary["conns_upgraded"] == 2 and summary["conns_not_http"] == 0


NOADDR_SERVER = r"""
import ctypes, socket, sys
libc = ctypes.CDLL("libc.so.6", use_errno=True)
ls = socket.create_server(("127.0.0.1", int(sys.argv[1])))
print("ready", flush=True)
for _ in range(int(sys.argv[2])):
    c = socket.socket(fileno=libc.accept(ls.fileno(), None, None))  # as libuv (Node.js) does
    c.recv(100)
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    c.close()
"""


def test_server_accepting_without_sockaddr() -> None:
    """A server that accepts with a NULL sockaddr (libuv, so every Node.js server) and
    answers short connections: each exchange is captured on both sides."""
    port, n = free_port(), 10
    with live_capture(ports=[port]) as lc:
        server = subprocess.Popen(
            [sys.executable, "-c", NOADDR_SERVER, str(port), str(n)], stdout=subprocess.PIPE
        )
        try:
            assert server.stdout is not None
            assert server.stdout.readline() == b"ready\n"
            ports = [
                raw_exchange(
                    "127.0.0.1", port, req_bytes("GET", f"/na/{i}", [("Host", "x")])
                ).local_port
                for i in range(n)
            ]
            server.wait(timeout=30)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
        lc.wait_for(n, where=lambda p: p.direction == pb.OUTBOUND)
        lc.settle()
        inbound = {p.client.port: p for p in lc.inbound()}
        assert len(inbound) == n, lc.cap.summary()
        for i, client_port in enumerate(ports):
            (p_in,), _ = both_sides(lc, client_port, 1)
            assert p_in.http.req.url == f"/na/{i}" and p_in.http.res.body == b"ok"


def _complete_outbound(p: pb.RRPair) -> bool:
    return p.direction == pb.OUTBOUND and "incomplete" not in p.flags


def test_fifty_concurrent_connections_wrk() -> None:
    """wrk on 50 connections: one INBOUND RRPair per line of nginx's access log, and one
    complete OUTBOUND RRPair per response wrk counted."""
    with nginx() as ngx, live_capture(ports=[ngx.port]) as lc:
        # 50 connections, each pausing 20 ms before each request: at most ~5000
        # requests, whose records fit the ring buffer even if the agent drained nothing
        # until the end (this machine's 2 cores are shared with wrk and nginx)
        result = wrk(ngx.url + "/hello?wrk", connections=50, duration_s=2, delay_ms=20)
        # wait for as many RRPairs as there should be (fails on timeout), then for quiet
        lc.wait_for(result.requests, timeout=60, where=_complete_outbound)
        lc.wait_for(
            len(ngx.access_log_lines()), timeout=60, where=lambda p: p.direction == pb.INBOUND
        )
        lc.settle(quiet=0.5)
        log_lines = ngx.access_log_lines()
        summary = lc.cap.summary()
    inb = [p for p in lc.pairs if p.direction == pb.INBOUND]
    out = [p for p in lc.pairs if p.direction == pb.OUTBOUND]
    assert result.requests > 0
    assert len(inb) == len(log_lines), summary
    out_complete = [p for p in out if _complete_outbound(p)]
    assert len(out_complete) == result.requests, summary
    assert len({p.client.port for p in inb}) == 50
    for p in inb + out_complete:
        assert p.http.req.method == "GET" and p.http.req.url == "/hello?wrk"
        assert p.http.res.status_code == 200 and p.http.res.body == b"hello world\n"
    assert {p.meta.comm for p in out} == {"wrk"}
    lost = {k: summary[k] for k in LOSS_COUNTERS if summary[k]}
    assert not lost
