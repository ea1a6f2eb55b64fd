"""uvicorn on uvloop (libuv: accepts with a NULL sockaddr), serving an ASGI app that logs,
per request, the client port uvicorn saw (scope["client"]) in the same form as the Node.js
server (tests/support/peers/node_http.py); and an aiohttp client driving it.

Started as children of the test, stopped by PID.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.support.peers.json_log import JsonLogServer
from tests.support.servers import free_port, wait_for_port

APP = r"""
import json, sys

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    size, more = 0, True
    while more:
        msg = await receive()
        size += len(msg.get("body", b""))
        more = msg.get("more_body", False)
    url = scope["raw_path"].decode()
    port = scope["client"][1]
    body = f"{scope['method']} {url} from {port}\n".encode()
    print(json.dumps({"method": scope["method"], "url": url, "remotePort": port,
                      "reqBytes": size, "status": 200}), flush=True)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})
"""

# argv: port n. n sequential requests, a connection each, then n concurrent ones over
# aiohttp's keep-alive pool (4 connections); half of them POSTs.
CLIENT = r"""
import asyncio, json, sys
import aiohttp

async def one(s, port, path, i):
    url = f"http://127.0.0.1:{port}/{path}/{i}"
    data = b"y" * (i * 7) if i % 2 else None
    async with s.request("POST" if data else "GET", url, data=data) as r:
        text = await r.text()
        print(json.dumps({"url": f"/{path}/{i}", "status": r.status, "body": text}))

async def main(port, n):
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        for i in range(n):
            await one(s, port, "seq", i)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=4)) as s:
        await asyncio.gather(*(one(s, port, "pool", i) for i in range(n)))

asyncio.run(main(int(sys.argv[1]), int(sys.argv[2])))
"""


UvicornServer = JsonLogServer


@contextlib.contextmanager
def uvicorn_server() -> Iterator[UvicornServer]:
    """uvicorn --loop uvloop on a free 127.0.0.1 port."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="nodetap-uvicorn-") as tmp:
        (Path(tmp) / "ntapp.py").write_text(APP)
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "ntapp:app", "--app-dir", tmp, "--loop", "uvloop",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            stdout=subprocess.PIPE,
        )  # fmt: skip
        try:
            wait_for_port("127.0.0.1", port, timeout=30)
            yield UvicornServer(port, proc)
        finally:
            proc.kill()
            proc.wait()


def aiohttp_client(port: int, n: int) -> list[dict[str, object]]:
    proc = subprocess.run(
        [sys.executable, "-c", CLIENT, str(port), str(n)], capture_output=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr.decode()
    return [json.loads(line) for line in proc.stdout.splitlines()]
