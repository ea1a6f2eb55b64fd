"""The one gRPC transport of nodetap: client channels and servers, TLS and the bearer token.

Client side: ``channel(addr, tls=ClientTLS(...))`` (plaintext without ``tls``), with the message
size limit and keepalive pings every user of a forwarder or replay service gets; the token
travels as call metadata, ``bearer_metadata(token)``.

Server side: ``server(...)`` makes a ``grpc.Server`` whose ``TokenAuth`` interceptor refuses
calls without ``authorization: Bearer <token>`` (compared in constant time), and
``add_port(server, listen, tls=ServerTLS(...))`` listens with TLS (and client certificates
when ``client_ca`` is given) or in plaintext.

Used by the agent's forwarder sink, the forwarder and its clients, distributed replay and the
remote replay service.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from nodetap.errors import ConfigError

DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024

Metadata = tuple[tuple[str, str], ...]

# Keepalive pings find a dead peer (a cable pulled, a partition) in seconds, not minutes.
CLIENT_KEEPALIVE: tuple[tuple[str, int], ...] = (
    ("grpc.keepalive_time_ms", 2000),
    ("grpc.keepalive_timeout_ms", 3000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
)
# A server that pings its clients too, and lets them ping it as often as CLIENT_KEEPALIVE does.
SERVER_KEEPALIVE: tuple[tuple[str, int], ...] = (
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 1000),
    ("grpc.http2.max_ping_strikes", 0),
    ("grpc.keepalive_time_ms", 5000),
    ("grpc.keepalive_timeout_ms", 5000),
)

REFUSAL = "missing or wrong bearer token"


@dataclass(frozen=True, slots=True)
class ClientTLS:
    """TLS towards a server: verify it with the CA in ``ca``; present a client certificate when
    ``cert`` and ``key`` are given; ``server_name`` overrides the name checked in the server's
    certificate (default: the host of the address)."""

    ca: str
    cert: str | None = None
    key: str | None = None
    server_name: str | None = None


@dataclass(frozen=True, slots=True)
class ServerTLS:
    """TLS of a server: its certificate and key; with ``client_ca`` every client must present a
    certificate signed by that CA."""

    cert: str
    key: str
    client_ca: str | None = None


def read_pem(path: str | None, what: str) -> bytes | None:
    """The bytes of a PEM file (None for no path); an unreadable file is a ConfigError."""
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise ConfigError(
            f"cannot read {what} {path}: {e.strerror}; give a readable file"
        ) from None


def bearer_metadata(token: str | None) -> Metadata:
    """The call metadata that carries the bearer token (none without a token)."""
    return (("authorization", f"Bearer {token}"),) if token else ()


# -- client -------------------------------------------------------------------------------------
def channel(
    addr: str,
    *,
    tls: ClientTLS | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    keepalive: bool = True,
    options: Sequence[tuple[str, int | str]] = (),
) -> grpc.Channel:
    """A channel to addr ("HOST:PORT"): TLS with ``tls``, plaintext without.

    keepalive=False leaves out the keepalive pings (for a peer too busy to answer them in time).
    """
    opts: list[tuple[str, int | str]] = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        *(CLIENT_KEEPALIVE if keepalive else ()),
        *options,
    ]
    if tls is None:
        return grpc.insecure_channel(addr, options=opts)
    if tls.server_name:
        opts.append(("grpc.ssl_target_name_override", tls.server_name))
    creds = grpc.ssl_channel_credentials(
        root_certificates=read_pem(tls.ca, "TLS CA"),
        private_key=read_pem(tls.key, "TLS key"),
        certificate_chain=read_pem(tls.cert, "TLS certificate"),
    )
    return grpc.secure_channel(addr, creds, options=opts)


# -- server -------------------------------------------------------------------------------------
class TokenAuth(grpc.ServerInterceptor):  # type: ignore[misc]
    """Refuses calls without ``authorization: Bearer <token>`` with UNAUTHENTICATED.

    services: the full service names to guard (e.g. "nodetap.v1.Forwarder"); calls to other
    services (health checking, reflection) pass. None guards every call. on_refuse is called
    once per refused call (a metric)."""

    def __init__(
        self,
        token: str,
        *,
        services: Sequence[str] | None = None,
        refusal: str = REFUSAL,
        on_refuse: Callable[[], None] | None = None,
    ) -> None:
        self._want = f"Bearer {token}".encode()
        self._prefixes = tuple(f"/{s}/" for s in services) if services is not None else None
        self._refusal = refusal
        self._on_refuse = on_refuse

    def allows(self, metadata: Sequence[tuple[str, str | bytes]] | None) -> bool:
        """True when the metadata carries the token (constant-time compare)."""
        got = dict(metadata or ()).get("authorization", "")
        got_b = got.encode() if isinstance(got, str) else bytes(got)
        return hmac.compare_digest(got_b, self._want)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(details)
        if handler is None:
            return None
        if self._prefixes is not None and not details.method.startswith(self._prefixes):
            return handler
        if self.allows(details.invocation_metadata):
            return handler

        def refuse(request: Any, context: grpc.ServicerContext) -> Any:
            if self._on_refuse is not None:
                self._on_refuse()
            context.abort(grpc.StatusCode.UNAUTHENTICATED, self._refusal)

        if handler.request_streaming and handler.response_streaming:
            return grpc.stream_stream_rpc_method_handler(refuse)
        if handler.request_streaming:
            return grpc.stream_unary_rpc_method_handler(refuse)
        if handler.response_streaming:
            return grpc.unary_stream_rpc_method_handler(refuse)
        return grpc.unary_unary_rpc_method_handler(refuse)


def server(
    *,
    max_workers: int,
    thread_name_prefix: str = "",
    auth: TokenAuth | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    keepalive: bool = True,
    maximum_concurrent_rpcs: int | None = None,
) -> grpc.Server:
    """A grpc.Server (not started, no port yet) with the token check when auth is given.

    grpcio's server gives each open call a thread of its pool (max_workers) for the call's
    lifetime. keepalive=False leaves out the server's own pings and the permission for clients
    to ping often."""
    return grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix=thread_name_prefix),
        interceptors=[auth] if auth is not None else [],
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            *(SERVER_KEEPALIVE if keepalive else ()),
        ],
        maximum_concurrent_rpcs=maximum_concurrent_rpcs,
    )


def add_port(srv: grpc.Server, listen: str, tls: ServerTLS | None = None) -> int:
    """Listen on listen ("HOST:PORT", port 0: any) with TLS or in plaintext; the port bound,
    0 when grpc could not bind. grpc may also raise RuntimeError for an address it refuses."""
    if tls is None:
        return int(srv.add_insecure_port(listen))
    creds = grpc.ssl_server_credentials(
        [(read_pem(tls.key, "TLS key") or b"", read_pem(tls.cert, "TLS certificate") or b"")],
        root_certificates=read_pem(tls.client_ca, "TLS client CA"),
        require_client_auth=bool(tls.client_ca),
    )
    return int(srv.add_secure_port(listen, creds))
