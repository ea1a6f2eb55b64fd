"""nodetap.transport on loopback: the bearer token checked (right one accepted, wrong or
missing refused, in constant time), other services left open, TLS with a throwaway CA and
client certificates, the server-name override."""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from nodetap import transport
from nodetap.errors import ConfigError
from nodetap.transport import ClientTLS, ServerTLS, TokenAuth
from tests.forwarder.pki import make_pki

TOKEN = "transport-test-token"
SERVICE = "nodetap.test.Echo"


def _start(auth: TokenAuth | None, tls: ServerTLS | None = None) -> tuple[grpc.Server, int]:
    srv = transport.server(max_workers=4, auth=auth)
    srv.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                SERVICE,
                {
                    "Say": grpc.unary_unary_rpc_method_handler(lambda req, ctx: req),
                    "Chat": grpc.stream_stream_rpc_method_handler(lambda it, ctx: it),
                },
            ),
        )
    )
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, srv)
    port = transport.add_port(srv, "127.0.0.1:0", tls)
    assert port
    srv.start()
    return srv, port


@pytest.fixture
def pki(tmp_path: Path) -> Path:
    return make_pki(tmp_path / "pki")


def _say(ch: grpc.Channel, md: transport.Metadata = ()) -> bytes:
    say: Callable[..., bytes] = ch.unary_unary(f"/{SERVICE}/Say")
    return say(b"hello", metadata=md, timeout=10)


def _chat(ch: grpc.Channel, md: transport.Metadata = ()) -> list[bytes]:
    chat = ch.stream_stream(f"/{SERVICE}/Chat")
    return list(chat(iter([b"a", b"b"]), metadata=md, timeout=10))


def _health(ch: grpc.Channel, md: transport.Metadata = ()) -> Any:
    stub = health_pb2_grpc.HealthStub(ch)
    return stub.Check(health_pb2.HealthCheckRequest(), metadata=md, timeout=10)


@pytest.fixture
def guarded() -> Iterator[tuple[int, list[int]]]:
    refused: list[int] = []
    auth = TokenAuth(TOKEN, services=[SERVICE], on_refuse=lambda: refused.append(1))
    srv, port = _start(auth)
    try:
        yield port, refused
    finally:
        srv.stop(0)


def test_right_token_accepted_wrong_or_missing_refused(guarded: tuple[int, list[int]]) -> None:
    port, refused = guarded
    with transport.channel(f"127.0.0.1:{port}") as ch:
        good = transport.bearer_metadata(TOKEN)
        assert _say(ch, good) == b"hello"
        assert _chat(ch, good) == [b"a", b"b"]
        for md in ((), transport.bearer_metadata("wrong"), (("authorization", TOKEN),)):
            with pytest.raises(grpc.RpcError) as err:
                _say(ch, md)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "bearer token" in (err.value.details() or "")
            with pytest.raises(grpc.RpcError) as err:
                _chat(ch, md)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert len(refused) == 6
        # Services not named in `services` (health checking here) need no token.
        assert _health(ch).status == health_pb2.HealthCheckResponse.SERVING


def test_without_services_every_call_needs_the_token() -> None:
    srv, port = _start(TokenAuth(TOKEN, refusal="no entry"))
    try:
        with transport.channel(f"127.0.0.1:{port}", keepalive=False) as ch:
            with pytest.raises(grpc.RpcError) as err:
                _health(ch)
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
            assert err.value.details() == "no entry"
            assert _health(ch, transport.bearer_metadata(TOKEN)).status
            assert _say(ch, transport.bearer_metadata(TOKEN)) == b"hello"
    finally:
        srv.stop(0)


def test_no_auth_no_token_needed() -> None:
    srv, port = _start(None)
    try:
        with transport.channel(f"127.0.0.1:{port}") as ch:
            assert _say(ch) == b"hello"
            assert transport.bearer_metadata(None) == ()
    finally:
        srv.stop(0)


def test_token_compared_in_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)  # what nodetap.transport calls
    auth = TokenAuth(TOKEN)
    assert auth.allows(transport.bearer_metadata(TOKEN))
    assert not auth.allows(transport.bearer_metadata(TOKEN + "x"))
    assert not auth.allows(None)
    assert calls == [
        (f"Bearer {TOKEN}".encode(), f"Bearer {TOKEN}".encode()),
        (f"Bearer {TOKEN}x".encode(), f"Bearer {TOKEN}".encode()),
        (b"", f"Bearer {TOKEN}".encode()),
    ]


def test_tls_with_client_certificate_and_token(pki: Path) -> None:
    auth = TokenAuth(TOKEN, services=[SERVICE])
    tls = ServerTLS(str(pki / "server.crt"), str(pki / "server.key"), str(pki / "ca.crt"))
    srv, port = _start(auth, tls)
    addr = f"127.0.0.1:{port}"
    md = transport.bearer_metadata(TOKEN)
    full = ClientTLS(str(pki / "ca.crt"), str(pki / "client.crt"), str(pki / "client.key"))
    try:
        with transport.channel(addr, tls=full) as ch:
            assert _say(ch, md) == b"hello"
            with pytest.raises(grpc.RpcError) as err:
                _say(ch, transport.bearer_metadata("wrong"))
            assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        # the name checked in the server's certificate can be overridden: a wrong one fails
        named = ClientTLS(full.ca, full.cert, full.key, server_name="localhost")
        with transport.channel(addr, tls=named) as ch:
            assert _say(ch, md) == b"hello"
        wrong_name = ClientTLS(full.ca, full.cert, full.key, server_name="not-the-server.test")
        for bad in (
            wrong_name,  # the server's certificate does not name it
            ClientTLS(str(pki / "ca.crt")),  # no client certificate
        ):
            with transport.channel(addr, tls=bad) as ch, pytest.raises(grpc.RpcError) as err:
                _say(ch, md)
            assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        with transport.channel(addr) as ch, pytest.raises(grpc.RpcError):  # plaintext
            _say(ch, md)
    finally:
        srv.stop(0)


def test_server_tls_without_client_ca(pki: Path) -> None:
    srv, port = _start(None, ServerTLS(str(pki / "server.crt"), str(pki / "server.key")))
    try:
        with transport.channel(f"127.0.0.1:{port}", tls=ClientTLS(str(pki / "ca.crt"))) as ch:
            assert _say(ch) == b"hello"
    finally:
        srv.stop(0)


def test_unreadable_pem_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read TLS CA"):
        transport.channel("127.0.0.1:1", tls=ClientTLS(str(tmp_path / "missing.crt")))
    srv = transport.server(max_workers=1)
    try:
        with pytest.raises(ConfigError, match="cannot read TLS key"):
            transport.add_port(srv, "127.0.0.1:0", ServerTLS("x.crt", str(tmp_path / "no.key")))
    finally:
        srv.stop(0)
