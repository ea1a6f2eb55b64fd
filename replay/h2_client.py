"""Replay of HTTP/2 requests and gRPC calls (items of l7protocol "http2" and "grpc").

HTTP/2 goes through httpx's HTTP/2 client (the h2 library): h2c with prior knowledge for an
http:// target, h2 over TLS with ALPN for https://. gRPC calls go through grpcio's generic
calls (raw message bytes, no generated code): every call as stream_stream, which is the
same on the wire as unary and the other streaming kinds (the messages, then half-close).
One client and one channel per replay process, multiplexing the vusers' streams.
"""

from __future__ import annotations

import hashlib
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import httpx

from nodetap.errors import PeerError
from replay.client import ReplayError, tls_failure
from replay.compare import Actual
from replay.h2_items import grpc_metadata, metadata_text
from replay.model import FRAMING, Item

# grpcio's codes that mean the call never reached the server: counted as errors, not mismatches
_NOT_REACHED = ("failed to connect", "connection refused", "connect failed")


def _ssl_cause(exc: BaseException) -> ssl.SSLError | None:
    """The ssl.SSLError under an httpx error (its cause chain), if any."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


@dataclass
class H2Target:
    """Where HTTP/2 and gRPC items go, with the clients made on first use."""

    host: str
    port: int
    tls: bool = False
    ca_file: str | None = None
    timeout: float = 10.0
    keep_body_limit: int = 64 * 1024
    _http: httpx.AsyncClient | None = None
    _channel: grpc.aio.Channel | None = None
    _methods: dict[str, Any] = field(default_factory=dict)

    @property
    def authority(self) -> str:
        h = f"[{self.host}]" if ":" in self.host else self.host
        return f"{h}:{self.port}"

    def _ssl(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=self.ca_file)
        ctx.set_alpn_protocols(["h2"])
        return ctx

    async def send(self, item: Item, authority: str) -> Actual:
        if item.proto == "grpc":
            return await self._call(item, authority)
        return await self._request(item, authority)

    async def _request(self, item: Item, authority: str) -> Actual:
        if self._http is None:
            self._http = httpx.AsyncClient(
                http1=False,
                http2=True,
                verify=self._ssl() if self.tls else False,
                timeout=self.timeout,
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            )
        scheme = "https" if self.tls else "http"
        headers = [
            (n, v) for n, v in item.headers if n.lower() not in FRAMING and n.lower() != "host"
        ]
        url = f"{scheme}://{self.authority}{item.target if item.target.startswith('/') else '/'}"
        headers.append(("host", authority))  # httpx sends it as :authority over HTTP/2
        try:
            r = await self._http.request(
                item.method, url, headers=headers, content=item.body or None
            )
        except httpx.ConnectError as e:
            cause = _ssl_cause(e)
            if cause is not None:  # not TLS, or not trusted: every request would fail
                target = f"https://{self.authority}"
                raise PeerError(tls_failure(target, cause, self.ca_file)) from None
            raise ReplayError("refused", str(e) or "connect failed") from None
        except httpx.TimeoutException as e:
            raise ReplayError("timeout", str(e) or "no complete response in time") from None
        except (httpx.RemoteProtocolError, httpx.LocalProtocolError) as e:
            raise ReplayError("protocol", str(e)) from None
        except httpx.ReadError as e:
            raise ReplayError("reset", str(e) or "stream reset") from None
        body = r.content
        return Actual(
            r.status_code,
            [(k.decode("latin-1"), v.decode("latin-1")) for k, v in r.headers.raw],
            body if len(body) <= self.keep_body_limit else None,
            hashlib.sha256(body).hexdigest(),
            len(body),
        )

    def _grpc_channel(self, authority: str) -> grpc.aio.Channel:
        if self._channel is None:
            opts = [
                ("grpc.default_authority", authority),
                ("grpc.max_receive_message_length", -1),
                ("grpc.max_send_message_length", -1),
            ]
            target = self.authority
            if self.tls:
                ca = Path(self.ca_file).read_bytes() if self.ca_file else None
                creds = grpc.ssl_channel_credentials(root_certificates=ca)
                self._channel = grpc.aio.secure_channel(target, creds, options=opts)
            else:
                self._channel = grpc.aio.insecure_channel(target, options=opts)
        return self._channel

    async def _call(self, item: Item, authority: str) -> Actual:
        ch = self._grpc_channel(authority)
        path = item.target
        mc = self._methods.get(path)
        if mc is None:
            mc = self._methods[path] = ch.stream_stream(path)  # no serializers: raw bytes
        got: list[bytes] = []
        call = mc(
            iter(item.messages or ()), metadata=grpc_metadata(item.headers), timeout=self.timeout
        )
        try:
            async for m in call:
                got.append(bytes(m))
            code = await call.code()
            details = await call.details()
            initial, trailing = await call.initial_metadata(), await call.trailing_metadata()
        except grpc.aio.AioRpcError as e:
            code, details = e.code(), e.details() or ""
            initial, trailing = e.initial_metadata(), e.trailing_metadata()
        if code == grpc.StatusCode.UNAVAILABLE and not got:
            low = (details or "").lower()
            if any(w in low for w in _NOT_REACHED):
                raise ReplayError("refused", details or "UNAVAILABLE")
        if code == grpc.StatusCode.DEADLINE_EXCEEDED and not got:
            raise ReplayError("timeout", details or "deadline exceeded")
        body = b"".join(got)
        return Actual(
            200,
            metadata_text(initial),
            None,
            hashlib.sha256(body).hexdigest(),
            len(body),
            grpc_status=code.value[0],
            grpc_message=details or "",
            messages=got,
            trailers=metadata_text(trailing),
        )

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
