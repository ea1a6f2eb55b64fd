"""Real HTTP traffic turned into RRPairs, for tests that run before the live capture does.

A client sends raw requests over one keep-alive TCP connection to a real server (nginx or
the Python echo server); the bytes each way go through the agent's HTTP/1.x stitcher and
``build_http_rrpair``, as the capture would do with the bytes it reads from the kernel.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from agent.protocols.http1.stitch import Http1Stitcher
from agent.rrpairs import ConnContext, RRPairIds, build_http_rrpair
from nodetap.identity import Identity
from nodetap.v1 import rrpair_pb2 as pb


@dataclass
class Req:
    method: str = "GET"
    path: str = "/hello"
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""

    def wire(self, host: str) -> bytes:
        lines = [f"{self.method} {self.path} HTTP/1.1", f"Host: {host}"]
        lines += [f"{k}: {v}" for k, v in self.headers]
        if self.body or self.method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


def exchange_pairs(
    port: int, requests: Iterable[Req], ids: RRPairIds | None = None, host: str = "127.0.0.1"
) -> Iterator[pb.RRPair]:
    """Send each request on one connection; yield one RRPair per exchange as it completes."""
    ids = ids or RRPairIds()
    with socket.create_connection((host, port), timeout=10) as s:
        cport = s.getsockname()[1]
        ctx = ConnContext(
            "OUTBOUND",
            host,
            cport,
            host,
            port,
            "syscall",
            conn_id=cport,
            who=Identity(node="test-node", comm="test-client"),
        )
        st = Http1Stitcher()
        for req in requests:
            data = req.wire(f"{host}:{port}")
            s.sendall(data)
            got = st.feed_request_bytes(data, time.time_ns())
            while not got:
                chunk = s.recv(65536)
                if not chunk:
                    got = st.close(time.time_ns())
                    break
                got = st.feed_response_bytes(chunk, time.time_ns())
            for ex in got:
                yield build_http_rrpair(ex, ctx, ids.next())


def simple_requests(n: int, path: str = "/hello") -> list[Req]:
    return [Req("GET", f"{path}?i={i}") for i in range(n)]
