"""A grpcio server of raw-bytes methods (generic handlers, no generated code) for the
HTTP/2 decoder's tests: every kind of call, an error status with a message, compression.
As a program (for the live capture, which leaves out its own process):
`python -m tests.support.peers.grpc_echo serve PORT` and `... calls PORT` (calls() below).

Service `test.Echo`:
  Unary(b) -> b[::-1];  ServerStream(b) -> b, b+b'1', b+b'2';  ClientStream(*bs) -> b''.join(bs)
  Bidi(*bs) -> each b upper-cased;  Fail(b) -> NOT_FOUND "no such thing: b" (percent-encoded
  on the wire by grpcio)
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
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


def server(
    compression: grpc.Compression | None = None,
    unary: Callable[[bytes, grpc.ServicerContext], bytes] = _unary,
) -> grpc.Server:
    """The server, not yet listening nor started; `unary` replaces Unary's answer (a server
    whose answer changed, for the replay tests)."""
    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
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


def serve(
    compression: grpc.Compression | None = None,
    unary: Callable[[bytes, grpc.ServicerContext], bytes] = _unary,
    port: int = 0,
    credentials: grpc.ServerCredentials | None = None,
) -> tuple[grpc.Server, int]:
    """A started server on a loopback port (a free one by default; stop it with .stop(0))."""
    srv = server(compression, unary)
    if credentials is not None:  # gRPC over TLS
        port = srv.add_secure_port(f"127.0.0.1:{port}", credentials)
    else:
        port = srv.add_insecure_port(f"127.0.0.1:{port}")
    srv.start()
    return srv, port


def calls(port: int) -> int:
    """Every kind of call once and an error status through one channel, each answer checked;
    returns the number of calls (6)."""
    path = f"/{SERVICE}/"
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=OPTIONS) as ch:
        assert ch.unary_unary(path + "Unary")(b"hello", metadata=[("x-tenant", "a")]) == b"olleh"
        assert ch.unary_unary(path + "Unary")(b"x" * 200_000, timeout=30) == b"x" * 200_000
        assert list(ch.unary_stream(path + "ServerStream")(b"s")) == [b"s", b"s1", b"s2"]
        assert ch.stream_unary(path + "ClientStream")(iter([b"a", b"", b"b"])) == b"ab"
        assert list(ch.stream_stream(path + "Bidi")(iter([b"x", b"y"]))) == [b"X", b"Y"]
        try:
            ch.unary_unary(path + "Fail")(b"thing", timeout=30)
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.NOT_FOUND
        else:
            raise AssertionError("Fail did not fail")
    return 6


@contextlib.contextmanager
def serving_process() -> Iterator[int]:
    """serve() in a process of its own; yields the port."""
    from tests.support.peers.process import serving
    from tests.support.servers import free_port

    port = free_port()
    with serving([sys.executable, "-m", "tests.support.peers.grpc_echo", "serve", str(port)], port):
        yield port


def calls_process(port: int) -> int:
    """calls() from a process of its own."""
    subprocess.run(
        [sys.executable, "-m", "tests.support.peers.grpc_echo", "calls", str(port)],
        check=True,
        timeout=120,
    )
    return 6


if __name__ == "__main__":
    what, port_arg = sys.argv[1], int(sys.argv[2])
    if what == "serve":
        srv, _ = serve(port=port_arg)
        signal.signal(signal.SIGTERM, lambda *_: srv.stop(0))
        srv.wait_for_termination()
    else:
        calls(port_arg)
