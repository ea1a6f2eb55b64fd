"""grpcio over TLS (its bundled BoringSSL), as processes of their own (the test's process
runs the capture, which never traces itself):

    python -m tests.tls.grpcio_tls serve PORT CERT KEY   # test.Echo (grpc_echo) over TLS
    python -m tests.tls.grpcio_tls call PORT CAFILE      # unary calls; prints the answers

The certificate is the one the test makes (CN localhost, SAN 127.0.0.1).
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import grpc

from tests.support.peers import grpc_echo


def serve(port: int, cert: Path, key: Path) -> None:
    server = grpc_echo.server()
    creds = grpc.ssl_server_credentials([(key.read_bytes(), cert.read_bytes())])
    server.add_secure_port(f"127.0.0.1:{port}", creds)
    server.start()
    threading.Event().wait()


def call(port: int, ca: Path) -> list[str]:
    creds = grpc.ssl_channel_credentials(root_certificates=ca.read_bytes())
    options = [*grpc_echo.OPTIONS, ("grpc.ssl_target_name_override", "localhost")]
    with grpc.secure_channel(f"127.0.0.1:{port}", creds, options=options) as ch:
        unary = ch.unary_unary(f"/{grpc_echo.SERVICE}/Unary")
        return [unary(m, timeout=30).decode() for m in (b"abc", b"hello tls")]


def main(argv: list[str]) -> None:
    what, port = argv[0], int(argv[1])
    if what == "serve":
        serve(port, Path(argv[2]), Path(argv[3]))
    elif what == "call":
        print(json.dumps(call(port, Path(argv[2]))))
    else:
        raise SystemExit(f"unknown command {what}")


if __name__ == "__main__":
    main(sys.argv[1:])
