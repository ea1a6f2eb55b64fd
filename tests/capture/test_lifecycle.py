"""Connection lifetimes: fd reuse never mixes two connections (also when dup2 closes the
fd), and a process that exits without close() has its connections finished by the
agent."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nodetap.v1 import rrpair_pb2 as pb
from tests.support.capture import live_capture
from tests.support.servers import nginx

pytestmark = [pytest.mark.bpf, pytest.mark.root]

REUSE = """
import socket, sys
port = int(sys.argv[1])
fds = []
for path in ("/hello?first", "/hello?second"):
    s = socket.create_connection(("127.0.0.1", port))
    fds.append(s.fileno())
    head = "GET " + path + " HTTP/1.1\\r\\nHost: t\\r\\nConnection: close\\r\\n\\r\\n"
    s.sendall(head.encode())
    while s.recv(65536):
        pass
    s.close()
print(fds[0] == fds[1])
"""

EXIT_WITHOUT_CLOSE = """
import os, socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(b"GET /hello?gone HTTP/1.1\\r\\nHost: t\\r\\n\\r\\n")
time.sleep(0.2)
os._exit(0)  # no close(): the kernel closes the socket at exit, no syscall says so
"""

DUP2_OVER = """
import os, socket, sys
port = int(sys.argv[1])

def exchange(fd, path, close):
    head = "GET " + path + " HTTP/1.1\\r\\nHost: t\\r\\n"
    if close:
        head += "Connection: close\\r\\n"
    os.write(fd, (head + "\\r\\n").encode())
    got = b""
    while not got.endswith(b"hello world\\n"):
        more = os.read(fd, 65536)
        if not more:
            break
        got += more

a = socket.create_connection(("127.0.0.1", port))
b = socket.create_connection(("127.0.0.1", port))
print(a.getsockname()[1], b.getsockname()[1])
exchange(a.fileno(), "/hello?one", close=False)
fd_a, fd_b = a.detach(), b.detach()
os.dup2(fd_b, fd_a)  # closes connection a without a close(); fd_a now names b's socket
os.close(fd_b)
exchange(fd_a, "/hello?two", close=True)
os.close(fd_a)
"""


def test_fd_reuse_gives_two_connections() -> None:
    with nginx() as srv, live_capture(ports=[srv.port]) as lc:
        out = subprocess.run(
            [sys.executable, "-c", REUSE, str(srv.port)],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout  # fmt: skip
        assert out.strip() == "True"  # the second connection got the first one's fd
        client = lc.wait_for(2, where=lambda p: p.direction == pb.OUTBOUND)
    assert [p.http.req.url for p in client] == ["/hello?first", "/hello?second"]
    assert client[0].meta.conn_id != client[1].meta.conn_id
    assert all(p.http.res.body == b"hello world\n" and not p.flags for p in client)


def test_dup2_over_a_connection_ends_it() -> None:
    """dup2() closes the connection its target fd named: the bytes that fd moves next (of
    another connection) must not be added to the first connection's streams."""
    with nginx() as srv, live_capture(ports=[srv.port]) as lc:
        out = subprocess.run(
            [sys.executable, "-c", DUP2_OVER, str(srv.port)],
            capture_output=True, text=True, check=True, timeout=30,
        ).stdout  # fmt: skip
        port_a, port_b = (int(x) for x in out.split())
        # the server saw both exchanges, each on its own connection
        served = lc.wait_for(2, where=lambda p: p.direction == pb.INBOUND)
        lc.settle()
        pairs = list(lc.pairs)
    assert sorted((p.client.port, p.http.req.url) for p in served) == [
        (port_a, "/hello?one"),
        (port_b, "/hello?two"),
    ]
    client_a = [p for p in pairs if p.direction == pb.OUTBOUND and p.client.port == port_a]
    assert [p.http.req.url for p in client_a] == ["/hello?one"]
    assert client_a[0].http.res.body == b"hello world\n" and not client_a[0].flags
    # b's bytes went through a's old fd number: not followed (a duplicate fd), never mixed
    assert all(
        p.client.port == port_b
        for p in pairs
        if p.direction == pb.OUTBOUND and "two" in p.http.req.url
    )


def test_exit_without_close_is_finished_by_the_agent() -> None:
    with nginx() as srv, live_capture(ports=[srv.port], idle_check_interval=0.5) as lc:
        subprocess.run(
            [sys.executable, "-c", EXIT_WITHOUT_CLOSE, str(srv.port)], check=True, timeout=30
        )
        (pair,) = lc.wait_for(1, where=lambda p: p.direction == pb.OUTBOUND, timeout=20)
        s = lc.cap.summary()
    assert pair.http.req.url == "/hello?gone"
    assert s["conns_process_gone"] >= 1
    # the response was never read by the client: what it saw of the exchange is incomplete
    assert "incomplete" in pair.flags
