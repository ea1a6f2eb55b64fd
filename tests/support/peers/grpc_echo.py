"""A grpcio server of raw-bytes methods (generic handlers, no generated code) for the
HTTP/2 decoder's tests: every kind of call, an error status with a message, compression.

Service `test.Echo`:
  Unary(b) -> b[::-1];  ServerStream(b) -> b, b+b'1', b+b'2';  ClientStream(*bs) -> b''.join(bs)
  Bidi(*bs) -> each b upper-cased;  Fail(b) -> NOT_FOUND "no such thing: b" (percent-encoded
  on the wire by grpcio)
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures

import grpc

SERVICE = "test.Echo"
BIG = 16 << 20  # message size limit on both sides (the tests send 4 MiB)
OPTIONS = [("grpc.max_receive_message_length", BIG), ("grpc.max_send_message_length", BIG)]


def _unary(req: bytes, ctx: grpc.ServicerContext) -> bytes:
    return req[::-1]


def _server_stream(req: bytes, ctx: grpc.ServicerContext) -> Iterator[bytes]:
    yield req
    yield req + b"1"
    yield req + b"2"


def _client_stream(reqs: Iterator[bytes], ctx: grpc.ServicerContext) -> bytes:
    return b"".join(reqs)


def _bidi(reqs: Iterator[bytes], ctx: grpc.ServicerContext) -> Iterator[bytes]:
    for r in reqs:
        yield r.upper()


def _fail(req: bytes, ctx: grpc.ServicerContext) -> bytes:
    ctx.abort(grpc.StatusCode.NOT_FOUND, f"no such thing: {req.decode()} ✓")
    raise AssertionError("abort returned")


def server(compression: grpc.Compression | None = None) -> grpc.Server:
    """The server, not yet listening nor started."""
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(_unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(_server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(_client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(_bidi),
        "Fail": grpc.unary_unary_rpc_method_handler(_fail),
    }
    s = grpc.server(
        futures.ThreadPoolExecutor(max_workers=8), options=OPTIONS, compression=compression
    )
    s.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    return s


def serve(compression: grpc.Compression | None = None) -> tuple[grpc.Server, int]:
    """A started server on a free loopback port (stop it with .stop(0))."""
    s = server(compression)
    port = s.add_insecure_port("127.0.0.1:0")
    s.start()
    return s, port
