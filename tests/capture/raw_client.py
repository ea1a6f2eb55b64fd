"""A raw-socket HTTP client for capture tests, in a process of its own: bytes sent exactly as
given (pipelined, cut in pieces, through sendmsg iovecs), and the bytes it read back."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from dataclasses import dataclass

from tests.capture.clients import TIMEOUT, Response, header_field

RAW_CLIENT = r"""
import base64, json, socket, sys
spec = json.loads(sys.stdin.readline())
family = socket.AF_INET6 if ":" in spec["host"] else socket.AF_INET
s = socket.socket(family, socket.SOCK_STREAM)
s.settimeout(30)
s.connect((spec["host"], spec["port"]))
port = s.getsockname()[1]
got = bytearray()
for op, arg in spec["steps"]:
    if op == "send":
        s.sendall(base64.b64decode(arg))
    elif op == "read":  # until `arg` bytes in all were received (None: until the peer closes)
        while arg is None or len(got) < arg:
            chunk = s.recv(65536 if arg is None else min(65536, arg - len(got)))
            if not chunk:
                break
            got += chunk
    elif op == "sendmsg":  # one sendmsg() with these buffers as its iovecs
        parts = [base64.b64decode(a) for a in arg]
        total, sent = sum(map(len, parts)), s.sendmsg(parts)
        if sent < total:
            s.sendall(b"".join(parts)[sent:])
    elif op == "readmsg":  # as "read", with recvmsg_into() into three buffers
        bufs = [bytearray(7), bytearray(300), bytearray(65536)]
        while arg is None or len(got) < arg:
            n = s.recvmsg_into(bufs)[0]
            if not n:
                break
            got += b"".join(bufs)[:n]
    elif op == "pause":
        print(json.dumps({"port": port}), flush=True)
        sys.stdin.readline()
s.close()
print(json.dumps({"port": port, "data": base64.b64encode(bytes(got)).decode()}), flush=True)
"""

Step = tuple[str, bytes | list[bytes] | int | None]


def _b64(arg: bytes | list[bytes] | int | None) -> str | list[str] | int | None:
    if isinstance(arg, bytes):
        return base64.b64encode(arg).decode()
    if isinstance(arg, list):
        return [base64.b64encode(a).decode() for a in arg]
    return arg


@dataclass
class RawRun:
    local_port: int
    received: bytes


class RawClient:
    """A raw-socket client process running `steps` on one connection, then closing it:
    ("send", bytes) writes them in one go; ("sendmsg", [bytes, ...]) writes them with one
    sendmsg() (an iovec each); ("read", n) reads until n bytes in all were received (None:
    until the server closes); ("readmsg", n) the same with recvmsg() into three buffers;
    ("pause", None) waits for `resume()`."""

    def __init__(self, host: str, port: int, steps: list[Step]) -> None:
        wire = [(op, _b64(arg)) for op, arg in steps]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", RAW_CLIENT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(
            (json.dumps({"host": host, "port": port, "steps": wire}) + "\n").encode()
        )
        self.proc.stdin.flush()
        self.local_port = 0
        if any(op == "pause" for op, _ in steps):
            line = self.proc.stdout.readline()
            if not line:
                self.close()
                raise AssertionError("raw client did not reach its pause")
            self.local_port = int(json.loads(line)["port"])

    def resume(self) -> RawRun:
        """Let the client run to its end (past its pause, if any)."""
        out, err = self.proc.communicate(b"go\n", timeout=TIMEOUT)
        if self.proc.returncode != 0:
            raise AssertionError(f"raw client failed: {err.decode()[-2000:]}")
        res = json.loads(out.splitlines()[-1])
        return RawRun(int(res["port"]), base64.b64decode(res["data"]))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def raw_exchange(host: str, port: int, data: bytes, read_limit: int | None = None) -> RawRun:
    """Connect, send `data` in one go (several requests: pipelining), read until the
    server closes (or until `read_limit` bytes, then close mid-response)."""
    with RawClient(host, port, [("send", data), ("read", read_limit)]) as client:
        return client.resume()


def split_responses(data: bytes, methods: list[str]) -> list[Response]:
    """Cut a byte stream of Content-Length-framed responses (as the raw client read
    them) into responses, one per request method given (HEAD, 1xx, 204 and 304 have no
    body). Only for tests that control the servers' framing."""
    out: list[Response] = []
    pos = 0
    for method in methods:
        end = data.index(b"\r\n\r\n", pos)
        lines = data[pos:end].decode("iso-8859-1").split("\r\n")
        version, status, reason = (lines[0].split(" ", 2) + [""])[:3]
        headers = [header_field(line) for line in lines[1:]]
        length = int(next((v for n, v in headers if n.lower() == "content-length"), "0"))
        if method == "HEAD" or status in ("204", "304"):
            length = 0
        body = data[end + 4 : end + 4 + length]
        out.append(Response(int(status), reason, version, headers, body))
        pos = end + 4 + length
    assert pos == len(data), f"{len(data) - pos} bytes left after {len(methods)} responses"
    return out
