"""A grpcio server of real protobuf messages (test.users.Users, protos/users.proto), its types
taken from a FileDescriptorSet made by grpcio-tools' protoc, for the --proto-descriptors tests:
Get(name) -> User{name, id 7 (8 when --changed), seen: now, tags [a, b]}; List(name) -> two
Users. As programs (the live capture leaves out its own process):
`python -m tests.support.peers.grpc_users serve PORT DESC [--changed]` and `... calls PORT DESC`.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from google.protobuf import message_factory

from nodetap.grpc_json import Renderer

PROTO = Path(__file__).with_name("protos") / "users.proto"
SERVICE = "test.users.Users"


def descriptors(out: Path) -> Path:
    """users.proto as a FileDescriptorSet (with its imports) at out."""
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO.parent}", "--include_imports",
         f"--descriptor_set_out={out}", str(PROTO)],
        check=True, timeout=60,
    )  # fmt: skip
    return out


def _types(desc: str) -> tuple[Any, Any]:
    pool = Renderer(desc).pool
    get = message_factory.GetMessageClass(pool.FindMessageTypeByName("test.users.GetUser"))
    user = message_factory.GetMessageClass(pool.FindMessageTypeByName("test.users.User"))
    return get, user


def serve(desc: str, port: int, changed: bool = False) -> grpc.Server:
    get_t, user_t = _types(desc)

    def user(name: str, n: int) -> bytes:
        u = user_t(name=name, id=n + (1 if changed else 0), tags=["a", "b"])
        u.seen.FromNanoseconds(time.time_ns())
        return u.SerializeToString()  # type: ignore[no-any-return]

    def get(req: bytes, ctx: grpc.ServicerContext) -> bytes:
        return user(get_t.FromString(req).name, 7)

    def list_(req: bytes, ctx: grpc.ServicerContext) -> Iterator[bytes]:
        name = get_t.FromString(req).name
        yield user(name + "1", 1)
        yield user(name + "2", 2)

    handlers = {
        "Get": grpc.unary_unary_rpc_method_handler(get),
        "List": grpc.unary_stream_rpc_method_handler(list_),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    return server


def calls(port: int, desc: str) -> int:
    """Get("ann") and List("x"); returns the number of calls (2)."""
    get_t, user_t = _types(desc)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
        u = user_t.FromString(
            ch.unary_unary(f"/{SERVICE}/Get")(get_t(name="ann").SerializeToString())
        )
        assert u.name == "ann"
        got = list(ch.unary_stream(f"/{SERVICE}/List")(get_t(name="x").SerializeToString()))
        assert [user_t.FromString(b).name for b in got] == ["x1", "x2"]
    return 2


@contextlib.contextmanager
def serving_process(desc: Path) -> Iterator[int]:
    from tests.support.peers.process import serving
    from tests.support.servers import free_port

    port = free_port()
    cmd = [sys.executable, "-m", "tests.support.peers.grpc_users", "serve", str(port), str(desc)]
    with serving(cmd, port):
        yield port


def calls_process(port: int, desc: Path) -> int:
    subprocess.run(
        [sys.executable, "-m", "tests.support.peers.grpc_users", "calls", str(port), str(desc)],
        check=True,
        timeout=120,
    )
    return 2


if __name__ == "__main__":
    what, port_arg, desc_arg = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    if what == "serve":
        srv = serve(desc_arg, port_arg, "--changed" in sys.argv)
        signal.signal(signal.SIGTERM, lambda *_: srv.stop(0))
        srv.wait_for_termination()
    else:
        calls(port_arg, desc_arg)
