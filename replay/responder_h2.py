"""The responder's HTTP/2 side (h2c with prior knowledge, or an HTTP/1.1 request with
`Upgrade: h2c` switched by 101 and answered on stream 1): requests answered from the same
recorded exchanges as HTTP/1.x (replay/mocks.py), through the h2 library (sans-IO).

A gRPC call (content-type application/grpc*) is matched by its :path and its request
messages (decompressed, gzip and deflate); its answer is the recorded response messages and
grpc-status/grpc-message trailers. An unmatched call gets UNIMPLEMENTED (12) with a message
saying what was asked and what was recorded, counted as unmatched; any other unmatched
HTTP/2 request gets 404 with the same words.
"""

from __future__ import annotations

import asyncio
import gzip
import zlib
from dataclasses import dataclass, field
from urllib.parse import quote

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions

from replay.mocks import Answer, MockSet, grpc_body
from replay.model import HOP_BY_HOP

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
UNIMPLEMENTED = 12
MAX_REQUEST = 64 << 20  # bytes of one request's body held before the stream is refused
# Response fields HTTP/2 forbids or the responder sets itself
_DROP = HOP_BY_HOP | {"content-length", "grpc-status", "grpc-message"}


def split_messages(body: bytes, encoding: str) -> list[bytes] | None:
    """The messages of a gRPC body (5-byte prefixes removed, compressed ones decompressed);
    None when the body is not whole messages or a message cannot be decompressed."""
    out, i = [], 0
    while i < len(body):
        if i + 5 > len(body):
            return None
        flag, n = body[i], int.from_bytes(body[i + 1 : i + 5], "big")
        m = body[i + 5 : i + 5 + n]
        if len(m) != n:
            return None
        if flag & 1:
            try:
                if encoding == "gzip":
                    m = gzip.decompress(m)
                elif encoding == "deflate":
                    m = zlib.decompress(m)
                else:
                    return None
            except (OSError, zlib.error, EOFError):
                return None
        out.append(m)
        i += 5 + n
    return out


def grpc_message(text: str) -> str:
    """grpc-message as the wire carries it: percent-encoded outside printable ASCII."""
    return quote(text, safe="".join(chr(c) for c in range(0x20, 0x7F) if chr(c) != "%"))


def _frame(messages: list[bytes]) -> bytes:
    return grpc_body(messages)


@dataclass
class _Stream:
    headers: dict[str, str] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)


@dataclass
class Upgrade:
    """An HTTP/1.1 request that asked for h2c: its HTTP2-Settings and the request itself,
    answered over HTTP/2 on stream 1 once 101 is sent."""

    settings: bytes
    headers: dict[str, str]
    body: bytes


UPGRADE_101 = b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"


@dataclass
class _Out:
    data: bytes
    trailers: list[tuple[bytes, bytes]] | None


class H2Handler:
    """One HTTP/2 connection of the responder, fed the connection's bytes."""

    def __init__(
        self,
        mocks: MockSet,
        transport: asyncio.Transport,
        dst: str | None,
        upgrade: Upgrade | None = None,
    ) -> None:
        """upgrade: the HTTP/1.1 request that asked for h2c (the caller has not answered it);
        ValueError when its HTTP2-Settings is not valid (the caller answers 400)."""
        self.mocks, self.transport, self.dst = mocks, transport, dst
        cfg = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.conn = h2.connection.H2Connection(config=cfg)
        self.streams: dict[int, _Stream] = {}
        self.out: dict[int, _Out] = {}
        if upgrade is None:
            self.conn.initiate_connection()
            self._flush()
            return
        try:
            self.conn.initiate_upgrade_connection(upgrade.settings)
        except (ValueError, h2.exceptions.ProtocolError) as e:
            raise ValueError(f"bad HTTP2-Settings: {e}") from None
        transport.write(UPGRADE_101)  # then the server's SETTINGS, then stream 1's answer
        self._flush()
        self._answer(1, _Stream(upgrade.headers, bytearray(upgrade.body)))
        self._flush()

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        if data and not self.transport.is_closing():
            self.transport.write(data)

    def feed(self, data: bytes) -> None:
        try:
            events = self.conn.receive_data(data)
        except h2.exceptions.ProtocolError:
            self._flush()
            self.transport.close()
            return
        for ev in events:
            if isinstance(ev, h2.events.RequestReceived):
                st = self.streams[ev.stream_id] = _Stream()
                for n, v in ev.headers:
                    st.headers[bytes(n).decode("latin-1")] = bytes(v).decode("latin-1")
            elif isinstance(ev, h2.events.DataReceived):
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                st2 = self.streams.get(ev.stream_id)
                if st2 is not None:
                    st2.body += ev.data
                    if len(st2.body) > MAX_REQUEST:
                        self.streams.pop(ev.stream_id, None)
                        self.conn.reset_stream(ev.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
            elif isinstance(ev, h2.events.StreamEnded):
                st3 = self.streams.pop(ev.stream_id, None)
                if st3 is not None:
                    self._answer(ev.stream_id, st3)
            elif isinstance(ev, h2.events.WindowUpdated):
                for sid in [ev.stream_id] if ev.stream_id else list(self.out):
                    if sid in self.out:
                        self._pump(sid)
            elif isinstance(ev, h2.events.StreamReset):
                self.streams.pop(ev.stream_id, None)
                self.out.pop(ev.stream_id, None)
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self._flush()
                self.transport.close()
                return
        self._flush()

    def _answer(self, sid: int, st: _Stream) -> None:
        h = st.headers
        method, path = h.get(":method", "GET"), h.get(":path", "/")
        host = h.get(":authority") or h.get("host")
        is_grpc = h.get("content-type", "").startswith("application/grpc")
        body = bytes(st.body)
        msgs = split_messages(body, h.get("grpc-encoding", "identity")) if is_grpc else None
        if msgs is not None:
            body = grpc_body(msgs)
        a = self.mocks.answer(method, path, body, self.dst, host)
        if is_grpc:
            self._grpc(sid, a, path, len(msgs or ()))
        else:
            self._http(sid, a, method, path)

    def _known(self, a: Answer) -> str:
        return ", ".join(self.mocks.known_requests(a.dependency)) or "none"

    def _http(self, sid: int, a: Answer, method: str, path: str) -> None:
        m = a.mock
        if m is None:
            body = (
                f"nodetap responder: no recorded exchange matches {method} {path} "
                f"(dependency {a.dependency}); recorded: {self._known(a)}\n"
            ).encode()
            hs = [(b":status", b"404"), (b"content-type", b"text/plain; charset=utf-8")]
            hs.append((b"x-nodetap-mock", b"unmatched"))
        else:
            body = m.body
            hs = [(b":status", str(m.status).encode())] + _fields(m.headers)
        if method == "HEAD" or (m is not None and m.status in (204, 304)):
            body = b""
        self._send(sid, hs, body, None)

    def _grpc(self, sid: int, a: Answer, path: str, n: int) -> None:
        m = a.mock
        head = [(b":status", b"200"), (b"content-type", b"application/grpc")]
        if m is None or m.grpc_status is None:
            why = (
                f"nodetap responder: no recorded gRPC call matches {path} with these {n} "
                f"request messages (dependency {a.dependency}); recorded: {self._known(a)}"
            )
            status = (b"grpc-status", str(UNIMPLEMENTED).encode())
            msg = (b"grpc-message", grpc_message(why).encode())
            self._send(sid, [*head, status, msg], b"", None)
            return
        own = [(n_, v) for n_, v in _fields(m.headers) if n_ != b"content-type"]
        trailers = [(b"grpc-status", str(m.grpc_status).encode())]
        if m.grpc_message:
            trailers.append((b"grpc-message", grpc_message(m.grpc_message).encode()))
        self._send(sid, head + own, _frame(m.messages), trailers)

    def _send(
        self,
        sid: int,
        headers: list[tuple[bytes, bytes]],
        body: bytes,
        trailers: list[tuple[bytes, bytes]] | None,
    ) -> None:
        try:
            if not body and trailers is None:
                self.conn.send_headers(sid, headers, end_stream=True)
                return
            self.conn.send_headers(sid, headers)
        except h2.exceptions.StreamClosedError:
            return
        self.out[sid] = _Out(body, trailers)
        self._pump(sid)

    def _pump(self, sid: int) -> None:
        """Send what the stream's flow-control window allows; the rest on WINDOW_UPDATE."""
        o = self.out[sid]
        c = self.conn
        try:
            while o.data:
                n = min(c.local_flow_control_window(sid), c.max_outbound_frame_size, len(o.data))
                if n <= 0:
                    return
                c.send_data(sid, o.data[:n])
                o.data = o.data[n:]
            if o.trailers is not None:
                c.send_headers(sid, o.trailers, end_stream=True)
            else:
                c.end_stream(sid)
        except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
            pass
        del self.out[sid]


def _fields(headers: list[tuple[str, str]]) -> list[tuple[bytes, bytes]]:
    """Recorded response fields as HTTP/2 sends them: lower-case names, no pseudo-headers,
    no connection-specific or framing fields."""
    out = []
    for n, v in headers:
        low = n.lower()
        if low[:1] == ":" or low in _DROP:
            continue
        out.append((low.encode("latin-1"), v.encode("latin-1", "replace")))
    return out
