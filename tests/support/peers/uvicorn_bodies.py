"""uvicorn with uvloop serving large bodies: a real ASGI server nobody here wrote.

    GET /bytes/N   -> 200, N bytes (a repeating pattern), Content-Length N, in one send

The app is the smallest ASGI callable; uvicorn (its HTTP parser, uvloop's transport and
its write path) is what the tests observe. ``uvicorn_server()`` starts it as a child
process on a free loopback port and stops it by PID.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.servers import free_port, wait_for_port

REPO = Path(__file__).resolve().parents[3]


def body_of(n: int) -> bytes:
    """The body /bytes/N serves (the clients compare with it)."""
    pattern = bytes(range(256)) * 64  # 16 KiB
    return (pattern * (n // len(pattern) + 1))[:n]


Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    path = scope["path"]
    n = int(path.rsplit("/", 1)[1]) if path.startswith("/bytes/") else 0
    body = body_of(n)
    headers = [(b"content-type", b"application/octet-stream")]
    headers.append((b"content-length", str(n).encode()))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


@dataclass
class Uvicorn:
    port: int
    pid: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def uvicorn_server() -> Iterator[Uvicorn]:
    """uvicorn --loop uvloop serving ``app`` on a free loopback port."""
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        "tests.support.peers.uvicorn_bodies:app",
        "--loop",
        "uvloop",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
        "--no-access-log",
    ]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL)
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
        yield Uvicorn(port=port, pid=proc.pid)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
