"""The responder: an HTTP/1.x server answering with recorded exchanges (replay/mocks.py);
a connection that opens with HTTP/2's client preface (h2c prior knowledge, gRPC) is handed
to replay/responder_h2.py.

asyncio + httptools (llhttp), keep-alive and pipelining (answers in request order). A request
redirected to it by nft DNAT carries its original destination (SO_ORIGINAL_DST): the mocks of
that dependency answer it. An unmatched request gets 404 with a body saying what was asked and
what was recorded, and is counted per dependency.

    r = Responder(load_mocks("cap.jsonl"), "127.0.0.1", 0)
    r.start()          # serves from a thread of its own
    ... r.port ...
    r.close(); print(r.mocks.report())
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from typing import Any

import httptools

from nodetap.errors import ConfigError, HostError
from replay.mocks import Answer, MockSet
from replay.model import unsafe_field, unsafe_text
from replay.responder_h2 import PREFACE, H2Handler, Upgrade

SO_ORIGINAL_DST = 80
IP6T_SO_ORIGINAL_DST = 80
SOL_IPV6 = 41


def original_dst(sock: socket.socket) -> str | None:
    """The destination "ip:port" the client connected to before a DNAT, or None (not NATed:
    the kernel gives the socket's own address, or no conntrack entry)."""
    try:
        if sock.family == socket.AF_INET:
            raw = sock.getsockopt(socket.SOL_IP, SO_ORIGINAL_DST, 16)
            port, ip = struct.unpack_from("!2xH4s", raw)
            addr = f"{socket.inet_ntop(socket.AF_INET, ip)}:{port}"
        else:
            raw = sock.getsockopt(SOL_IPV6, IP6T_SO_ORIGINAL_DST, 28)
            port = struct.unpack_from("!H", raw, 2)[0]
            ip6 = socket.inet_ntop(socket.AF_INET6, raw[8:24])
            addr = f"{ip6}:{port}"
    except OSError:
        return None
    own = sock.getsockname()
    return None if addr == f"{own[0]}:{own[1]}" else addr


def _reason(status: int, recorded: str) -> str:
    if recorded:
        return recorded
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def unsafe_answer(a: Answer) -> str | None:
    """Why a recorded answer cannot be sent as recorded (CR/LF or a character no byte holds in
    its reason phrase or a header: it would split the response in the client); None if it can."""
    m = a.mock
    if m is None:
        return None
    why = unsafe_text(m.reason or "")
    if why is not None:
        return f"reason phrase: {why}"
    for n, v in m.headers:
        bad = unsafe_field(n, v)
        if bad is not None:
            return f"{bad[0]}: {bad[1]}"
    return None


def encode_refusal(method: str, target: str, why: str, keep_alive: bool) -> bytes:
    """The 502 sent instead of a recorded answer that unsafe_answer refused."""
    body = (
        f"nodetap responder: the recorded answer to {method} {target} is not sent: it would "
        f"split the response ({why})\n"
    ).encode("latin-1", "replace")
    head = (
        "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"X-Nodetap-Mock: unsafe\r\nContent-Length: {len(body)}\r\n"
        + ("" if keep_alive else "Connection: close\r\n")
        + "\r\n"
    ).encode()
    return head if method == "HEAD" else head + body


def encode_answer(a: Answer, method: str, target: str, keep_alive: bool, known: list[str]) -> bytes:
    m = a.mock
    if m is None:
        body = (
            f"nodetap responder: no recorded exchange matches {method} {target} "
            f"(dependency {a.dependency}); recorded: {', '.join(known) or 'none'}\n"
        ).encode()
        status, reason = 404, "Not Found"
        headers = [("Content-Type", "text/plain; charset=utf-8"), ("X-Nodetap-Mock", "unmatched")]
    else:
        body, status, reason = m.body, m.status, _reason(m.status, m.reason)
        headers = list(m.headers)
    out = [f"HTTP/1.1 {status} {reason}\r\n"]
    out += [f"{n}: {v}\r\n" for n, v in headers]
    no_body = status in (204, 304) or 100 <= status < 200
    if not no_body:
        out.append(f"Content-Length: {len(body)}\r\n")
    if not keep_alive:
        out.append("Connection: close\r\n")
    out.append("\r\n")
    head = "".join(out).encode("latin-1")
    return head if no_body or method == "HEAD" else head + body


class _Server(asyncio.Protocol):
    def __init__(self, mocks: MockSet) -> None:
        self.mocks = mocks
        self.parser: Any = httptools.HttpRequestParser(self)
        self.transport: asyncio.Transport | None = None
        self.dst: str | None = None
        self.url = b""
        self.body: list[bytes] = []
        self.host: str | None = None
        self.first: bytes | None = b""  # the first bytes, until HTTP/2 or not is known
        self.h2: H2Handler | None = None
        self.upgrade: str | None = None  # the request's Upgrade and HTTP2-Settings fields
        self.h2_settings: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        self.dst = original_dst(sock) if sock is not None else None

    def data_received(self, data: bytes) -> None:
        if self.h2 is not None:
            self.h2.feed(data)
            return
        if self.first is not None:  # is it HTTP/2's client preface (prior knowledge)?
            self.first += data
            if PREFACE.startswith(self.first[:24]) and len(self.first) < len(PREFACE):
                return
            data, self.first = self.first, None
            if data.startswith(PREFACE) and self.transport is not None:
                self.h2 = H2Handler(self.mocks, self.transport, self.dst)
                self.h2.feed(data)
                return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:  # the request was answered (101 or not)
            if self.h2 is not None:
                self.h2.feed(data[e.args[0] :])  # the client's preface, then frames
            elif self.transport is not None:
                self.transport.close()  # another protocol (websocket): not recorded here
        except httptools.HttpParserError:
            if self.transport is not None:
                self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                self.transport.close()

    def on_message_begin(self) -> None:
        self.url, self.body, self.host = b"", [], None
        self.upgrade = self.h2_settings = None

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        low = name.lower()
        if low == b"host":
            self.host = value.decode("latin-1")
        elif low == b"upgrade":
            self.upgrade = value.decode("latin-1")
        elif low == b"http2-settings":
            self.h2_settings = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        method = self.parser.get_method().decode("latin-1")
        target = self.url.decode("latin-1")
        keep = bool(self.parser.should_keep_alive())
        if self._h2c(method, target):
            return
        a = self.mocks.answer(method, target, b"".join(self.body), self.dst, self.host)
        known = self.mocks.known_requests(a.dependency) if a.mock is None else []
        why = unsafe_answer(a)
        if why is not None:
            self.mocks.unsafe[a.dependency] += 1
            data = encode_refusal(method, target, why, keep)
        else:
            data = encode_answer(a, method, target, keep, known)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
            if not keep:
                self.transport.close()

    def _h2c(self, method: str, target: str) -> bool:
        """Switch to HTTP/2 (101) when the request asks for h2c with its settings (RFC 7540
        3.2) and answer it on stream 1; False to answer it over HTTP/1.1."""
        ups = {t.strip().lower() for t in (self.upgrade or "").split(",")}
        if "h2c" not in ups or self.h2_settings is None or self.transport is None:
            return False
        headers = {":method": method, ":path": target, ":scheme": "http"}
        if self.host is not None:
            headers[":authority"] = self.host
        up = Upgrade(self.h2_settings.encode("latin-1"), headers, b"".join(self.body))
        try:
            self.h2 = H2Handler(self.mocks, self.transport, self.dst, up)
        except ValueError:
            return False  # settings h2 cannot read: answered over HTTP/1.1 as if not asked
        return True


class Responder:
    """The server on a thread of its own (start/close), or run() in the caller's thread."""

    def __init__(
        self,
        mocks: MockSet,
        host: str = "127.0.0.1",
        port: int = 0,
        sock: socket.socket | None = None,
    ) -> None:
        """sock: a listening socket made elsewhere (in another network namespace)."""
        self.mocks, self.host, self.port, self.sock = mocks, host, port, sock
        self.loop = asyncio.new_event_loop()
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def listen(self) -> None:
        try:
            if self.sock is not None:
                make = self.loop.create_server(lambda: _Server(self.mocks), sock=self.sock)
            else:
                make = self.loop.create_server(lambda: _Server(self.mocks), self.host, self.port)
            self._server = self.loop.run_until_complete(make)
        except OSError as e:
            raise HostError(
                f"responder: cannot listen on {self.host}:{self.port} ({e.strerror}); "
                "give a free --listen address"
            ) from None
        self.port = self._server.sockets[0].getsockname()[1]

    def start(self) -> None:
        self.listen()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def serve(self, stop: threading.Event) -> None:
        """Serve in this thread (after listen()) until stop is set (checked every 0.2 s)."""

        async def wait() -> None:
            while not stop.is_set():
                await asyncio.sleep(0.2)

        self.loop.run_until_complete(wait())
        self._shutdown()

    def close(self) -> None:
        if self._thread is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)
            self._thread = None
        self._shutdown()

    def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                self.loop.run_until_complete(asyncio.wait_for(self._server.wait_closed(), 1.0))
            self._server = None
        if not self.loop.is_closed():
            self.loop.close()


def parse_listen(text: str) -> tuple[str, int]:
    """'127.0.0.1:8081', ':8081', '[::1]:8081', '8081' -> (host, port)."""
    t = text.strip()
    host, sep, port = t.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", t
    host = host.strip("[]") or "0.0.0.0"
    try:
        p = int(port)
        if not 0 <= p < 65536:
            raise ValueError
    except ValueError:
        raise ConfigError(f"--listen {text!r}: give HOST:PORT, like 127.0.0.1:8081") from None
    return host, p
