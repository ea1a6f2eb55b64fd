"""grpc_echo's server (tests/support/peers/grpc_echo.py) whose Unary also sends call metadata:
the initial metadata `x-version: VERSION` and the trailers `x-checksum: CHECKSUM` and
`x-sum-bin` (binary, base64 on the wire). For the replay's metadata comparison.
As a program: `python -m tests.support.peers.grpc_meta serve PORT VERSION CHECKSUM`.
"""

from __future__ import annotations

import signal
import sys

import grpc

from tests.support.peers import grpc_echo

SUM_BIN = b"\x00\x01\xfe\xff"


def serve(version: str | None, checksum: str, port: int = 0) -> tuple[grpc.Server, int]:
    """A started server on a loopback port; version None: no initial metadata."""

    def unary(req: bytes, ctx: grpc.ServicerContext) -> bytes:
        if version is not None:
            ctx.send_initial_metadata((("x-version", version),))
        ctx.set_trailing_metadata((("x-checksum", checksum), ("x-sum-bin", SUM_BIN)))
        return req[::-1]

    return grpc_echo.serve(unary=unary, port=port)


if __name__ == "__main__":
    srv, _ = serve(sys.argv[3], sys.argv[4], port=int(sys.argv[2]))
    signal.signal(signal.SIGTERM, lambda *_: srv.stop(0))
    srv.wait_for_termination()
