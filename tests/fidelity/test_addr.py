"""Issue 18, item 2: addresses right or absent, never wrong.

Node.js (libuv) accepts with a NULL sockaddr, so the accept() exit knows neither address.
Each test compares, per request, the client port Node.js itself saw (req.socket.remotePort,
which the server logs and also writes into the response body) with the RRPairs of both
sides: INBOUND (captured in the Node.js process) and OUTBOUND (in the client: curl,
Node.js fetch and http.request, a pipelining client). Behind haproxy, haproxy's own log
gives the client port and the port of its connection to Node.js; with --port set to
either, no connection is lost and every address agrees.

Before the fix each INBOUND RRPair of sequential requests carried the next connection's
client port (read late from /proc/PID/fd/N after N was reused), and the --port filter
dropped whole Node.js connections behind haproxy.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Sequence

import pytest

from nodetap.v1 import rrpair_pb2 as pb
from tests.capture.clients import curl
from tests.support.capture import LiveCapture, live_capture
from tests.support.peers.haproxy import haproxy
from tests.support.peers.node_http import NodeServer, node_client, node_server
from tests.support.peers.uvicorn_app import aiohttp_client, uvicorn_server
from tests.support.servers import free_port

pytestmark = [pytest.mark.bpf, pytest.mark.slow]


def _one(pairs: Sequence[pb.RRPair], url: str, direction: int) -> pb.RRPair:
    got = [p for p in pairs if p.direction == direction and p.http.req.url == url]
    assert len(got) == 1, (url, pb.Direction.Name(direction), [str(p) for p in got])
    return got[0]


def _check_against_server_log(
    lc: LiveCapture, log: list[dict[str, object]], server_port: int, outbound: bool = True
) -> None:
    """Every request the server logged has one INBOUND RRPair whose client is the port the
    server saw, and (if the client was captured) one OUTBOUND RRPair that agrees."""
    for entry in log:
        url, rport = str(entry["url"]), int(entry["remotePort"])  # type: ignore[call-overload]
        p_in = _one(lc.pairs, url, pb.INBOUND)
        assert "noaddr" not in p_in.flags, p_in
        assert (p_in.client.ip, p_in.client.port) == ("127.0.0.1", rport), (url, p_in)
        assert (p_in.server.ip, p_in.server.port) == ("127.0.0.1", server_port), (url, p_in)
        assert p_in.http.req.method == entry["method"]
        assert p_in.http.res.status_code == entry["status"]
        assert p_in.http.res.body == f"{entry['method']} {url} from {rport}\n".encode()
        assert p_in.http.req.body_size == entry["reqBytes"]
        if outbound:
            p_out = _one(lc.pairs, url, pb.OUTBOUND)
            assert (p_out.client.port, p_out.server.port) == (rport, server_port), (url, p_out)
            assert p_out.http.res.body == p_in.http.res.body


def _curl_sequential(srv: NodeServer, n: int) -> list[int]:
    ports = []
    for i in range(n):
        run = curl(f"http://127.0.0.1:{srv.port}/seq/{i}")
        assert run.stdout == f"GET /seq/{i} from {run.local_ports[0]}\n".encode()
        ports.append(run.local_ports[0])
    return ports


def _curl_concurrent(srv: NodeServer, n: int) -> None:
    procs = [
        subprocess.Popen(
            ["curl", "-sS", f"http://127.0.0.1:{srv.port}/conc/{i}"], stdout=subprocess.DEVNULL
        )
        for i in range(n)
    ]
    for p in procs:
        assert p.wait(timeout=60) == 0


def test_node_server_addresses_per_request() -> None:
    """Node.js http server: five sequential curl requests (one connection each), eight
    concurrent ones, fetch (undici's keep-alive pool), http.request with a keep-alive agent,
    and six pipelined requests on one connection. Every INBOUND RRPair carries the client
    port Node.js saw, the OUTBOUND side agrees, nothing is flagged noaddr."""
    with node_server() as srv, live_capture(ports=[srv.port]) as lc:
        seq_ports = _curl_sequential(srv, 5)
        _curl_concurrent(srv, 8)
        fetched = node_client("fetch", srv.port, 6)
        requested = node_client("request", srv.port, 6)
        piped = node_client("pipeline", srv.port, 6)
        total = 5 + 8 + 6 + 6 + 6
        log = srv.requests(total)
        assert len(log) == total
        assert [e["remotePort"] for e in log[:5]] == seq_ports
        assert len({e["remotePort"] for e in log if str(e["url"]).startswith("/pipe/")}) == 1
        assert all(r["status"] == 200 for r in fetched + requested + piped)
        lc.wait_for(total, timeout=60, where=lambda p: p.direction == pb.INBOUND)
        lc.wait_for(total, timeout=60, where=lambda p: p.direction == pb.OUTBOUND)
        lc.settle()
        summary = lc.cap.summary()
    _check_against_server_log(lc, log, srv.port)
    for r in requested + piped:  # the clients' own view of their local ports
        assert _one(lc.pairs, str(r["url"]), pb.OUTBOUND).client.port == r["localPort"]
    assert summary["rrpairs_noaddr"] == 0 and summary["conns_noaddr_unresolved"] == 0, summary
    assert summary["addr_at_read_conns"] >= 5 + 8, summary
    assert summary["conns_filtered_user"] == 0, summary


def test_node_addresses_without_the_tracepoint() -> None:
    """Where the kernel cannot report addresses at the first read (forced here), /proc is
    believed only when the connection provably still owned its fd: each INBOUND RRPair
    has the client port Node.js saw, or none (flagged noaddr), never another one."""
    with (
        node_server() as srv,
        live_capture(ports=[srv.port], addr_at_read=False) as lc,
    ):
        _curl_sequential(srv, 5)
        _curl_concurrent(srv, 8)
        log = srv.requests(13)
        lc.wait_for(13, timeout=60, where=lambda p: p.direction == pb.INBOUND)
        lc.settle()
        summary = lc.cap.summary()
    assert summary["addr_at_read_conns"] == 0
    for entry in log:
        p_in = _one(lc.pairs, str(entry["url"]), pb.INBOUND)
        if "noaddr" in p_in.flags:
            assert p_in.client.port == 0 and p_in.server.port == 0, p_in
        else:
            assert p_in.client.port == entry["remotePort"], (entry, p_in)
            assert p_in.server.port == srv.port


@pytest.mark.parametrize("which", ["node-port", "haproxy-port"])
def test_haproxy_in_front_of_node(which: str) -> None:
    """haproxy -> Node.js, curl in front: with --port set to Node.js's port, every request
    haproxy forwarded appears on both sides of that hop (haproxy OUTBOUND, Node.js INBOUND)
    with the port of haproxy's connection to Node.js as its log has it; with --port set to
    haproxy's port, both sides of the client hop with the client port of haproxy's log, and
    no Node.js connection (those do not match)."""
    n = 8
    with node_server() as srv, haproxy(srv.port) as hap:
        port = srv.port if which == "node-port" else hap.port
        with live_capture(ports=[port]) as lc:
            for i in range(n):
                run = curl(f"http://127.0.0.1:{hap.port}/hap/{i}")
                assert run.stdout.startswith(f"GET /hap/{i} from ".encode())
            node_log = srv.requests(n)
            hap_log = hap.requests(n)
            lc.wait_for(n, timeout=60, where=lambda p: p.direction == pb.INBOUND)
            lc.wait_for(n, timeout=60, where=lambda p: p.direction == pb.OUTBOUND)
            lc.settle()
            summary = lc.cap.summary()
    assert len(node_log) == n and len(hap_log) == n
    by_url = {e.url: e for e in hap_log}
    if which == "node-port":
        _check_against_server_log(lc, node_log, srv.port)
        for entry in node_log:  # haproxy's side of the hop to Node.js, from its own log
            assert by_url[str(entry["url"])].backend_port == entry["remotePort"]
            p_out = _one(lc.pairs, str(entry["url"]), pb.OUTBOUND)
            assert p_out.meta.pid == hap.pid
    else:
        assert all(p.server.port == hap.port for p in lc.pairs), [str(p) for p in lc.pairs]
        for e in hap_log:
            p_in = _one(lc.pairs, e.url, pb.INBOUND)
            p_out = _one(lc.pairs, e.url, pb.OUTBOUND)
            assert p_in.client.port == p_out.client.port == e.client_port, (e, p_in, p_out)
            assert p_in.meta.pid == hap.pid and p_in.http.res.status_code == e.status
        assert summary["conns_filtered_user"] >= 1  # Node.js's side, decided by address
    assert summary["rrpairs_noaddr"] == 0, summary


NOADDR_READERS = r"""
import ctypes, os, socket, sys
libc = ctypes.CDLL("libc.so.6", use_errno=True)
ls = socket.create_server(("127.0.0.1", int(sys.argv[1])))
print("ready", flush=True)
for how in sys.argv[2:]:
    fd = libc.accept(ls.fileno(), None, None)  # as libuv does: no sockaddr
    c = socket.socket(fileno=fd)
    if how == "read":
        data = os.read(fd, 4096)
    elif how == "readv":
        buf = bytearray(4096)
        data = bytes(buf[: os.readv(fd, [buf])])
    elif how == "recvmsg":
        data = c.recvmsg(4096)[0]
    else:
        data = c.recv(4096)  # recvfrom
    port = c.getpeername()[1]
    print(how, port, flush=True)
    body = f"{how} {port}".encode()
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body)
    c.sendall(head + body)
    c.close()
"""


def test_addresses_at_the_first_read_of_every_read_syscall() -> None:
    """A server that accepts without a sockaddr and reads each connection's request with
    another syscall (read, readv, recvfrom, recvmsg): the first read reports the addresses
    (bpf/conn_addr.c), the right ones, on every path."""
    hows = ["read", "readv", "recvfrom", "recvmsg"] * 2
    port = free_port()
    with live_capture(ports=[port]) as lc:
        server = subprocess.Popen(
            [sys.executable, "-c", NOADDR_READERS, str(port), *hows], stdout=subprocess.PIPE
        )
        try:
            assert server.stdout is not None
            assert server.stdout.readline() == b"ready\n"
            seen = []
            for i, how in enumerate(hows):
                run = curl(f"http://127.0.0.1:{port}/r/{i}")
                line = server.stdout.readline().decode().split()
                assert line[0] == how and run.stdout == f"{how} {line[1]}".encode()
                seen.append(int(line[1]))
            server.wait(timeout=30)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
        lc.wait_for(len(hows), timeout=60, where=lambda p: p.direction == pb.INBOUND)
        lc.settle()
        summary = lc.cap.summary()
    for i, rport in enumerate(seen):
        p_in = _one(lc.pairs, f"/r/{i}", pb.INBOUND)
        assert (p_in.client.port, p_in.server.port, list(p_in.flags)) == (rport, port, [])
    assert summary["addr_at_read_conns"] == len(hows), summary


def test_uvicorn_on_uvloop_addresses() -> None:
    """uvicorn on uvloop (libuv accepts without a sockaddr) driven by aiohttp, sequential
    requests on a connection each, then concurrent ones over a keep-alive pool, decoded at
    once by the core: every INBOUND RRPair carries the
    client port uvicorn saw, and the OUTBOUND side agrees."""
    n = 2 * 8
    with (
        uvicorn_server() as srv,
        live_capture(ports=[srv.port]) as lc,
    ):
        got = aiohttp_client(srv.port, n // 2)
        log = srv.requests(n)
        lc.wait_for(n, timeout=60, where=lambda p: p.direction == pb.INBOUND)
        lc.wait_for(n, timeout=60, where=lambda p: p.direction == pb.OUTBOUND)
        lc.settle()
        summary = lc.cap.summary()
    assert len(log) == n and all(r["status"] == 200 for r in got)
    _check_against_server_log(lc, log, srv.port)
    assert summary["rrpairs_noaddr"] == 0 and summary["addr_at_read_conns"] >= 1, summary
