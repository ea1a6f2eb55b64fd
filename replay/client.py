"""An HTTP/1.1 client for replay: asyncio protocols, httptools (llhttp) response parsing,
a per-target pool of keep-alive connections, one request in flight per connection.

Chosen by measurement (bench/replay_rate.py): an asyncio.Protocol feeding httptools directly
does a fraction of the per-request work of asyncio streams or aiohttp.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import socket
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httptools

from replay.compare import Actual


class ReplayError(Exception):
    """A request that got no complete response; kind is refused/reset/timeout/other."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


def classify(exc: BaseException) -> str:
    if isinstance(exc, ReplayError):
        return exc.kind
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return "reset"
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return "timeout"
    if isinstance(exc, OSError) and exc.errno in (errno.ETIMEDOUT, errno.EHOSTUNREACH):
        return "timeout"
    if isinstance(exc, httptools.HttpParserError):
        return "protocol"
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return "tls"
    return "other"


def tls_context(ca_file: str | None, alpn: str) -> ssl.SSLContext:
    """A client context that verifies the target (against ca_file, else the system store)."""
    ctx = ssl.create_default_context(cafile=ca_file)
    ctx.set_alpn_protocols([alpn])
    return ctx


def tls_failure(target: str, exc: BaseException, ca_file: str | None) -> str:
    """One line for a TLS handshake that failed: what is wrong, what to do."""
    reason = getattr(exc, "reason", None) or str(exc) or type(exc).__name__
    if isinstance(exc, ssl.SSLCertVerificationError):
        fix = (
            "give the CA that signed its certificate with --target-ca"
            if ca_file is None
            else f"check that {ca_file} signed its certificate and that it names the host"
        )
        what = exc.verify_message or reason
        return f"--target {target}: the server's certificate is not trusted ({what}); {fix}"
    return (
        f"--target {target}: TLS handshake failed ({reason}); is it a TLS port? "
        "use http:// for a plaintext server"
    )


class _Conn(asyncio.Protocol):
    """One connection; parses each response with a fresh httptools parser."""

    def __init__(self, loop: asyncio.AbstractEventLoop, keep_limit: int) -> None:
        self.loop = loop
        self.base_limit = keep_limit
        self.keep_limit = keep_limit
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.waiter: asyncio.Future[Actual] | None = None
        self.parser: Any = None
        self.head = False
        self.headers: list[tuple[str, str]] = []
        self.chunks: list[bytes] = []
        self.kept = 0
        self.size = 0
        self.sha: Any = None
        self.keep_alive = True
        self.deadline = 0.0

    # asyncio callbacks
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.parser is None:
            self.closed = True
            if self.transport is not None:
                self.transport.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._finish()
        except httptools.HttpParserError as e:
            self._fail(ReplayError("protocol", str(e)))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self._fail(exc or ReplayError("reset", "connection closed before the response ended"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if status >= 200 and (self.head or status in (204, 304)):
            self._finish()

    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        self.sha.update(body)
        if self.kept + len(body) <= self.keep_limit:
            self.chunks.append(body)
            self.kept += len(body)
        else:
            self.keep_limit = -1  # body too large to keep: hash only

    def on_message_complete(self) -> None:
        if 100 <= self.parser.get_status_code() < 200:
            self.headers = []  # an interim response (100 Continue): the final one follows
            return
        self._finish()

    def _finish(self) -> None:
        w = self.waiter
        if w is None or w.done():
            return
        p = self.parser
        self.keep_alive = bool(p.should_keep_alive())
        body = b"".join(self.chunks) if self.keep_limit >= 0 else None
        w.set_result(
            Actual(p.get_status_code(), self.headers, body, self.sha.hexdigest(), self.size)
        )
        self.parser = None

    def _fail(self, exc: BaseException) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
        w = self.waiter
        if w is not None and not w.done():
            w.set_exception(exc)
        self.parser = None

    async def request(self, data: bytes, head: bool, timeout: float) -> Actual:
        assert self.transport is not None
        self.head = head
        self.headers, self.chunks, self.kept, self.size = [], [], 0, 0
        self.keep_limit = self.base_limit
        self.sha = hashlib.sha256()
        self.parser = httptools.HttpResponseParser(self)
        self.waiter = w = self.loop.create_future()
        # The pool's watchdog enforces the deadline (one timer for all connections).
        self.deadline = self.loop.time() + timeout
        self.transport.write(data)
        result: Actual = await w
        return result

    def _timeout(self, w: asyncio.Future[Actual]) -> None:
        if not w.done():
            self._fail(ReplayError("timeout", "no complete response in time"))

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


@dataclass(slots=True)
class PoolStats:
    opened: int = 0
    reused: int = 0
    connect_s: float = 0.0
    slow_connects: int = 0  # connects over 0.9 s: a SYN was retransmitted (dropped)
    gate_waits: int = 0
    gate_wait_s: float = 0.0


@dataclass
class Pool:
    """Idle keep-alive connections to one host:port, shared by the vusers of a process.

    ``gate`` is awaited before each new connection (the conntrack throttle); it returns
    the seconds it made the caller wait.
    """

    host: str
    port: int
    timeout: float = 10.0
    keep_limit: int = 64 * 1024
    gate: Callable[[], Awaitable[float]] | None = None
    tls: ssl.SSLContext | None = None  # an https:// target: every connection over TLS
    idle: list[_Conn] = field(default_factory=list)
    stats: PoolStats = field(default_factory=PoolStats)
    _addr: tuple[int, Any] | None = None
    active: set[_Conn] = field(default_factory=set)
    _watch: asyncio.Task[None] | None = None

    async def _watchdog(self) -> None:
        """Fail requests past their deadline; forget closed connections."""
        loop = asyncio.get_running_loop()
        tick = min(0.25, self.timeout / 4)
        while True:
            await asyncio.sleep(tick)
            now = loop.time()
            for c in list(self.active):
                w = c.waiter
                busy = w is not None and not w.done()
                if busy and now > c.deadline and w is not None:
                    c._timeout(w)
                elif c.closed and not busy:
                    self.active.discard(c)

    async def acquire(self) -> tuple[_Conn, float]:
        """A connection (idle or new) and the seconds the conntrack gate held it back."""
        while self.idle:
            c = self.idle.pop()
            if not c.closed:
                self.stats.reused += 1
                return c, 0.0
        if self._watch is None:
            self._watch = asyncio.get_running_loop().create_task(self._watchdog())
        waited = 0.0
        if self.gate is not None:
            waited = await self.gate()
            if waited > 0:
                self.stats.gate_waits += 1
                self.stats.gate_wait_s += waited
        loop = asyncio.get_running_loop()
        t0 = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout):
                if self._addr is None:  # resolve once, not per connection
                    infos = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
                    self._addr = (infos[0][0], infos[0][4])
                family, addr = self._addr
                sock = socket.socket(family, socket.SOCK_STREAM)
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                try:
                    await loop.sock_connect(sock, addr)
                    _, conn = await loop.create_connection(
                        lambda: _Conn(loop, self.keep_limit),
                        sock=sock,
                        ssl=self.tls,
                        server_hostname=self.host if self.tls is not None else None,
                    )
                except BaseException:
                    sock.close()
                    raise
        except TimeoutError:
            raise ReplayError("timeout", f"connect to {self.host}:{self.port}") from None
        self.active.add(conn)
        dt = time.monotonic() - t0
        self.stats.opened += 1
        self.stats.connect_s += dt
        if dt > 0.9:
            self.stats.slow_connects += 1
        return conn, waited

    def release(self, conn: _Conn, reuse: bool) -> None:
        if reuse and conn.keep_alive and not conn.closed:
            self.idle.append(conn)
        else:
            conn.close()

    def close(self) -> None:
        for c in self.idle:
            c.close()
        self.idle.clear()
        self.active.clear()
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
