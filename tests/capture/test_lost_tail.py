"""Bytes lost at the end of a connection whose CLOSE record never arrives.

A process that exits without close() (the kernel closes its sockets) sends no CLOSE
record, and a CLOSE record can itself be lost to a full ring buffer; either way the
record's offsets, which show the bytes that never arrived, are missing. When the
connection is finished anyway (process gone, or the capture stops), the kernel's own
offsets for it show them: the lost tail is a gap, counted and flagged, never silently
missing.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from agent.capture import CaptureConfig, SyscallCapture
from nodetap.v1 import rrpair_pb2 as pb

pytestmark = [pytest.mark.bpf, pytest.mark.root]

TOTAL = 100_000  # response bytes, head included: a multiple of the client's reads

# Answers one request with exactly TOTAL bytes (it is not captured: the capture filters on
# the client's pid).
SERVER = r"""
import socket, sys
total = int(sys.argv[1])
ls = socket.create_server(("127.0.0.1", 0))
print(ls.getsockname()[1], flush=True)
c, _ = ls.accept()
c.recv(65536)
n = total
while True:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % n
    if len(head) + n == total:
        break
    n = total - len(head)
c.sendall(head + bytes(n))
c.recv(1)
"""

# Waits for a line on stdin (so that the capture is armed and filters on its pid), fetches
# the response in reads of exactly 1000 bytes, and exits without close().
CLIENT = r"""
import os, socket, sys
sys.stdin.readline()
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
req = b"GET /lost-tail HTTP/1.1\r\nHost: t\r\n\r\n"
s.sendall(req)
got = 0
while got < int(sys.argv[2]):
    got += len(s.recv(1000, socket.MSG_WAITALL))
print(len(req), got, flush=True)
os._exit(0)
"""


def test_lost_tail_of_a_connection_without_close() -> None:
    pairs: list[pb.RRPair] = []
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(TOTAL)], stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        client = subprocess.Popen(
            [sys.executable, "-c", CLIENT, str(port), str(TOTAL)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        try:
            # one page of ring buffer, nothing drained until the client is gone: the
            # request and the first few 1000-byte reads fit, every later read is dropped
            cap = SyscallCapture(
                CaptureConfig(pids=[client.pid], ringbuf_pages=1, preexisting=False),
                pairs.append,
            )
            cap.start()
            try:
                out, _ = client.communicate(b"go\n", timeout=30)
                cap.poll()
            finally:
                cap.close()
        finally:
            if client.poll() is None:
                client.kill()
                client.wait()
    finally:
        server.kill()
        server.wait()
    sent, received = (int(x) for x in out.split())
    s = cap.summary()
    assert received == TOTAL and s["drop_ringbuf_data_records"] > 0
    assert s["conns_tracked"] == 1
    # every byte the client moved was either seen or counted as a gap
    assert s["data_bytes"] + s["stream_gap_bytes"] == sent + received, s
    assert s["stream_gaps"] >= 1
    (pair,) = pairs
    assert pair.direction == pb.OUTBOUND
    assert pair.http.req.url == "/lost-tail"
    assert pair.http.res.status_code == 200
    assert "gap" in pair.flags


# Serves one request with a response written 32 bytes at a time, then close()s. Its data
# records are no larger than a CLOSE record: before the ring kept room for control records
# (bpf/common.h), once one did not fit the ring buffer, the CLOSE record did not fit either.
SMALL_WRITES_SERVER = r"""
import socket, sys
ls = socket.create_server(("127.0.0.1", 0))
print(ls.getsockname()[1], flush=True)
sys.stdin.readline()
c, _ = ls.accept()
c.recv(65536)
body = bytes(6000)
data = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body
for i in range(0, len(data), 32):
    c.sendall(data[i : i + 32])
c.close()
print(len(data), flush=True)
sys.stdin.readline()
"""

FETCH = r"""
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.sendall(sys.argv[2].encode())
while s.recv(65536):
    pass
"""


def test_lost_tail_when_the_ring_is_full_at_close() -> None:
    """The server close()s while its data fills the ring buffer: the CLOSE record still finds
    the room kept for it, and its offsets show the tail that was lost."""
    server = subprocess.Popen(
        [sys.executable, "-c", SMALL_WRITES_SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    pairs: list[pb.RRPair] = []
    request = "GET /x HTTP/1.1\r\nHost: t\r\n\r\n"
    try:
        assert server.stdin is not None and server.stdout is not None
        port = int(server.stdout.readline())
        cap = SyscallCapture(
            CaptureConfig(pids=[server.pid], ringbuf_pages=1, preexisting=False), pairs.append
        )
        cap.start()
        try:
            server.stdin.write(b"go\n")
            server.stdin.flush()
            subprocess.run(
                [sys.executable, "-c", FETCH, str(port), request], check=True, timeout=30
            )
            sent = int(server.stdout.readline())
            cap.poll()
        finally:
            cap.close()
    finally:
        server.kill()
        server.wait()
    s = cap.summary()
    assert s["drop_ringbuf_data_records"] >= 1
    assert s["drop_ringbuf_control_records"] == 0  # the CLOSE record found its room
    assert s["reserved_room_records"] >= 1
    (pair,) = pairs
    assert pair.http.res.status_code == 200
    assert s["data_bytes"] + s["stream_gap_bytes"] == len(request) + sent, s
    assert "gap" in pair.flags
