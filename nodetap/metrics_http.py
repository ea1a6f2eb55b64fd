"""A small HTTP endpoint for metrics and health, shared by the agent, forwarder and replay agent.

``serve(addr)`` starts a server in the background and returns at once: one event-loop thread
for every connection (never a thread per connection), read/idle/write timeouts, at most
MAX_CONNECTIONS connections, callbacks on a pool of two threads. It serves:

- ``/metrics``  Prometheus text format from prometheus-client's default registry
- ``/healthz``  200 while the process serves at all (liveness)
- ``/readyz``   200 once ``ready()`` returns true, 503 before (readiness)
- ``/status``   JSON from ``status()`` (404 when no status callback was given)

The command line's ``--metrics-addr ADDR`` flag is in cli/options/metrics.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from nodetap.errors import ConfigError, HostError

log = logging.getLogger(__name__)

DEFAULT_METRICS_ADDR = "127.0.0.1:9464"


def parse_addr(addr: str) -> tuple[str, int]:
    """'HOST:PORT', ':PORT' (all interfaces), '[::1]:PORT' or 'PORT' -> (host, port)."""
    text = addr.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "", text
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(
            f"bad address {addr!r}; use HOST:PORT, :PORT or PORT (e.g. 0.0.0.0:9464)"
        ) from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"bad port in {addr!r}; use a port between 0 and 65535")
    return (host or "0.0.0.0"), port


READ_TIMEOUT = 10.0  # a request head must arrive within this (slowloris)
IDLE_TIMEOUT = 30.0  # a keep-alive connection may stay idle this long (Prometheus reuses them)
WRITE_TIMEOUT = 10.0  # a response must be taken within this
MAX_CONNECTIONS = 256  # beyond this, new connections are closed at once
MAX_HEAD = 8192
_TEXT = "text/plain; charset=utf-8"


class _Endpoints:
    """What each path answers (runs in a worker thread: a slow callback never stalls the loop)."""

    def __init__(self, ready: Callable[[], bool], status: Callable[[], Any] | None) -> None:
        self.ready = ready
        self.status = status

    def answer(self, path: str) -> tuple[int, bytes, str]:
        try:
            if path == "/metrics":
                return 200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST
            if path == "/healthz":
                return 200, b"ok\n", _TEXT
            if path == "/readyz":
                return (200, b"ready\n", _TEXT) if self.ready() else (503, b"not ready\n", _TEXT)
            if path == "/status" and self.status is not None:
                body = json.dumps(self.status(), indent=2, default=str).encode() + b"\n"
                return 200, body, "application/json"
            return 404, b"not found\n", _TEXT
        except Exception as e:  # a callback failed: report it, keep serving
            log.warning("%s failed: %s", path, e)
            return 500, f"error: {e}\n".encode(), _TEXT


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            500: "Internal Server Error", 503: "Service Unavailable"}  # fmt: skip


def _response(code: int, body: bytes, ctype: str, *, head: bool, close: bool) -> bytes:
    lines = [
        f"HTTP/1.1 {code} {_REASONS.get(code, 'Error')}",
        f"Content-Type: {ctype}",
        f"Content-Length: {len(body)}",
        "Connection: close" if close else "Connection: keep-alive",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + (b"" if head else body)


class _HTTPServer:
    """One event-loop thread serves every connection (no thread per connection); each
    connection has read, idle and write timeouts; at most MAX_CONNECTIONS at once; the
    callbacks run on a small pool of two threads."""

    def __init__(
        self, addr: tuple[str, int], ready: Callable[[], bool], status: Callable[[], Any] | None
    ) -> None:
        self._endpoints = _Endpoints(ready, status)
        self._loop = asyncio.new_event_loop()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="nodetap-http-cb")
        self._open = 0
        self.started = threading.Event()
        self._waiting: dict[asyncio.WriteTransport, None] = {}  # in arrival order
        family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
            sock.listen(128)
            sock.setblocking(False)
        except OSError:
            sock.close()
            self._loop.close()
            self._pool.shutdown(wait=False)
            raise
        self.socket = sock
        self.server_address = sock.getsockname()
        self._server: asyncio.base_events.Server | None = None

    def serve_forever(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._connection, sock=self.socket, limit=MAX_HEAD)
        )
        self.started.set()
        self._loop.run_forever()
        self._server.close()
        for task in asyncio.all_tasks(self._loop):
            task.cancel()
        self._loop.run_until_complete(asyncio.sleep(0))
        self._loop.close()

    def shutdown(self) -> None:
        if not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._loop.stop)

    def server_close(self) -> None:
        self.socket.close()
        self._pool.shutdown(wait=False)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._open >= MAX_CONNECTIONS:
            # make room by dropping the connection that has waited longest for a request
            # (a slow or idle client), so that probes keep getting through
            if not self._waiting:
                writer.transport.abort()
                return
            oldest = next(iter(self._waiting))
            del self._waiting[oldest]
            oldest.abort()
        self._open += 1
        transport = writer.transport
        try:
            timeout = READ_TIMEOUT
            while True:
                self._waiting[transport] = None
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
                except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                    return
                except asyncio.LimitOverrunError:
                    await self._send(writer, _response(400, b"bad request\n", _TEXT,
                                                       head=False, close=True))  # fmt: skip
                    return
                finally:
                    self._waiting.pop(transport, None)
                request = head.decode("latin-1").split("\r\n")
                parts = request[0].split(" ")
                if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                    await self._send(writer, _response(400, b"bad request\n", _TEXT,
                                                       head=False, close=True))  # fmt: skip
                    return
                method, target, version = parts
                headers = {
                    k.strip().lower(): v.strip()
                    for k, _, v in (line.partition(":") for line in request[1:] if line)
                }
                close = version == "HTTP/1.0" or headers.get("connection", "").lower() == "close"
                if headers.get("content-length", "0") != "0" or "transfer-encoding" in headers:
                    close = True  # no request bodies here: do not try to skip one
                if method not in ("GET", "HEAD"):
                    response = _response(405, b"method not allowed\n", _TEXT, head=False,
                                         close=True)  # fmt: skip
                    close = True
                else:
                    path = target.split("?", 1)[0]
                    code, body, ctype = await self._loop.run_in_executor(
                        self._pool, self._endpoints.answer, path
                    )
                    response = _response(code, body, ctype, head=method == "HEAD", close=close)
                if not await self._send(writer, response) or close:
                    return
                timeout = IDLE_TIMEOUT
        finally:
            self._open -= 1
            writer.close()

    @staticmethod
    async def _send(writer: asyncio.StreamWriter, data: bytes) -> bool:
        try:
            writer.write(data)
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
            return True
        except (TimeoutError, ConnectionError):
            writer.transport.abort()
            return False


class Server:
    """A running metrics/health server; ``close()`` stops it (idempotent)."""

    def __init__(self, httpd: _HTTPServer) -> None:
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, name="nodetap-http", daemon=True
        )
        self._thread.start()
        httpd.started.wait(10)  # serving once serve() returns; a close() right away is safe
        self._closed = False

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        host = self.host
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._httpd.shutdown()
        self._thread.join(timeout=5)
        self._httpd.server_close()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(
    addr: str,
    ready: Callable[[], bool] = lambda: True,
    status: Callable[[], Any] | None = None,
) -> Server:
    """Serve /metrics, /healthz, /readyz and /status on ``addr`` (port 0: any free port)."""
    host, port = parse_addr(addr)
    try:
        httpd = _HTTPServer((host, port), ready, status)
    except OSError as e:
        raise HostError(
            f"cannot listen on {addr} for metrics: {e.strerror}; pick another --metrics-addr"
        ) from None
    server = Server(httpd)
    log.info("metrics and health on %s", server.url)
    return server
