"""Clients and servers with unusual syscall patterns, run as separate processes so that
the capture (which never traces its own process) sees them.

    python -m tests.capture.peers MODE PORT [ARG]

Servers print "ready" once listening, then serve one connection (or a few) and exit.
"""

from __future__ import annotations

import ctypes
import os
import socket
import sys
import tempfile
import threading
import time

REQUEST = b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n"
libc = ctypes.CDLL("libc.so.6", use_errno=True)


class IOVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class MsgHdr(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_void_p),
        ("namelen", ctypes.c_uint32),
        ("iov", ctypes.POINTER(IOVec)),
        ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p),
        ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    ]


class MMsgHdr(ctypes.Structure):
    _fields_ = [("hdr", MsgHdr), ("len", ctypes.c_uint)]


def _read_response(s: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    n = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            n = int(line.split(b":")[1])
    while len(body) < n:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def _listen(port: int) -> socket.socket:
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind(("127.0.0.1", port))
    srv.listen(64)
    print("ready", flush=True)
    return srv


def _read_request(c: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = c.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def client_big_write(port: int, size: int) -> None:
    """One request whose body goes out in a single send() of `size` bytes."""
    body = b"b" * size
    head = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % size
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(head)
        s.sendall(body)
        _read_response(s)


def client_many_iovecs(port: int, count: int) -> None:
    """One request written with a single writev() of `count` iovecs."""
    body = b"v" * count
    head = b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % count
    with socket.create_connection(("127.0.0.1", port)) as s:
        os.writev(s.fileno(), [head] + [body[i : i + 1] for i in range(count)])
        _read_response(s)


def client_sendmmsg(port: int) -> None:
    """A request sent with sendmmsg() (one message) on a TCP socket."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        buf = ctypes.create_string_buffer(REQUEST, len(REQUEST))
        iov = IOVec(ctypes.cast(buf, ctypes.c_void_p), len(REQUEST))
        msg = MMsgHdr()
        msg.hdr.iov = ctypes.pointer(iov)
        msg.hdr.iovlen = 1
        if libc.sendmmsg(s.fileno(), ctypes.byref(msg), 1, 0) != 1:
            raise OSError(ctypes.get_errno(), "sendmmsg failed")
        _read_response(s)


def client_hold(port: int, count: int) -> None:
    """Open `count` connections, one request on each, all held open together."""
    socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(count)]
    for s in socks:
        s.sendall(REQUEST)
        _read_response(s)
    time.sleep(0.5)
    for s in socks:
        s.close()


def client_sequential(port: int, count: int) -> None:
    """`count` requests, each on a new connection."""
    for _ in range(count):
        with socket.create_connection(("127.0.0.1", port)) as s:
            s.sendall(REQUEST)
            _read_response(s)


def client_slow(port: int) -> None:
    """Connect, wait, then send one request."""
    with socket.create_connection(("127.0.0.1", port)) as s:
        time.sleep(0.8)
        s.sendall(REQUEST)
        _read_response(s)


def client_not_http(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port)) as s:
        # a PostgreSQL startup message (a TLS ClientHello is TLS now: counted, not parsed)
        s.sendall(b"\x00\x00\x00\x4c\x00\x03\x00\x00user\x00" + b"\x00" * 64)
        time.sleep(0.3)


def server_sendfile(port: int, size: int) -> None:
    """Answer one request with a body sent by sendfile()."""
    with tempfile.TemporaryFile() as f:
        f.write(b"f" * size)
        f.flush()
        srv = _listen(port)
        c, _ = srv.accept()
        _read_request(c)
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
        c.sendfile(f, 0, size)
        c.close()


def server_readv_fault(port: int) -> None:
    """Read the request with readv() while another thread points the iovec at NULL: the
    kernel copied the iovec at entry, so the read succeeds, but the capture, which reads
    the iovec at exit, cannot read the bytes (a read fault it must count)."""
    srv = _listen(port)
    c, _ = srv.accept()
    buf = ctypes.create_string_buffer(65536)
    iov = IOVec(ctypes.cast(buf, ctypes.c_void_p), 65536)
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(libc.readv(c.fileno(), ctypes.byref(iov), 1)))
    t.start()
    time.sleep(0.3)
    iov.base = None  # the syscall is blocked in the kernel by now
    t.join(10)
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    c.close()


def server_idle_keepalive(port: int, count: int) -> None:
    """Serve `count` keep-alive connections, one thread each, blocking in recv()."""
    srv = _listen(port)

    def serve(c: socket.socket) -> None:
        while _read_request(c):
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        c.close()

    threads = []
    for _ in range(count):
        c, _ = srv.accept()
        t = threading.Thread(target=serve, args=(c,), daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join(10)


def main() -> None:
    mode, port = sys.argv[1], int(sys.argv[2])
    arg = int(sys.argv[3]) if len(sys.argv) > 3 else 0
    modes = {
        "big-write": lambda: client_big_write(port, arg),
        "many-iovecs": lambda: client_many_iovecs(port, arg),
        "sendmmsg": lambda: client_sendmmsg(port),
        "hold": lambda: client_hold(port, arg),
        "sequential": lambda: client_sequential(port, arg),
        "not-http": lambda: client_not_http(port),
        "slow": lambda: client_slow(port),
        "sendfile-server": lambda: server_sendfile(port, arg),
        "readv-fault-server": lambda: server_readv_fault(port),
        "idle-keepalive-server": lambda: server_idle_keepalive(port, arg),
    }
    modes[mode]()


if __name__ == "__main__":
    main()
