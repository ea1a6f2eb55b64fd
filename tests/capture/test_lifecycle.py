"""Connection lifetimes: fd reuse never mixes two connections, and a process that exits
without close() has its connections finished by the agent."""

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
