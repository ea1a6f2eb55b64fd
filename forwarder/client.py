"""Connecting to a forwarder: channels (plaintext or TLS), the bearer token, error wording.

Shared by the agent's sink, `nodetap export`, `nodetap snapshot` and tests.
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from pathlib import Path

import grpc

from nodetap.errors import NodetapError
from nodetap.v1 import forwarder_pb2 as fpb
from nodetap.v1 import forwarder_pb2_grpc as fgrpc
from nodetap.v1 import rrpair_pb2 as pb

DEFAULT_MAX_MESSAGE_BYTES = 16 * 1024 * 1024

# Keepalive pings find a dead peer (a cable pulled, a partition) in seconds, not minutes.
KEEPALIVE_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.keepalive_time_ms", 2000),
    ("grpc.keepalive_timeout_ms", 3000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
)


def read_file(path: str | None, what: str) -> bytes | None:
    if not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise NodetapError(f"cannot read {what} {path}: {e.strerror}") from None


def read_token(path: str | None) -> str | None:
    """The bearer token in a file (surrounding whitespace removed), or None."""
    data = read_file(path, "token file")
    if data is None:
        return None
    token = data.decode("utf-8", "replace").strip()
    if not token:
        raise NodetapError(f"token file {path} is empty; put the forwarder's token in it")
    return token


def metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()


def channel(
    addr: str,
    *,
    tls_ca: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    options: Sequence[tuple[str, int | str]] = (),
) -> grpc.Channel:
    """A channel to addr ("HOST:PORT"); TLS when tls_ca is given (plus a client certificate
    when tls_cert and tls_key are)."""
    opts: list[tuple[str, int | str]] = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        *KEEPALIVE_OPTIONS,
        *options,
    ]
    if tls_ca:
        creds = grpc.ssl_channel_credentials(
            root_certificates=read_file(tls_ca, "TLS CA"),
            private_key=read_file(tls_key, "TLS key"),
            certificate_chain=read_file(tls_cert, "TLS certificate"),
        )
        return grpc.secure_channel(addr, creds, options=opts)
    return grpc.insecure_channel(addr, options=opts)


def stub(ch: grpc.Channel) -> fgrpc.ForwarderStub:
    return fgrpc.ForwarderStub(ch)  # type: ignore[no-untyped-call]


def rpc_error(e: grpc.RpcError, addr: str) -> NodetapError:
    """A one-line NodetapError for a failed call to the forwarder at addr."""
    code = e.code() if hasattr(e, "code") else None
    details = e.details() if hasattr(e, "details") else str(e)
    if code == grpc.StatusCode.UNAVAILABLE:
        return NodetapError(f"forwarder {addr} unreachable ({details}); is it running there?")
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return NodetapError(f"forwarder {addr} refused the token ({details}); pass --token-file")
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return NodetapError(
            f"forwarder {addr}: message too large ({details}); raise the size limit"
        )
    name = code.name if code is not None else "ERROR"
    return NodetapError(f"forwarder {addr}: {name}: {details}")


Metadata = tuple[tuple[str, str], ...]


def add_client_arguments(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """--forwarder ADDR, --token-file, --tls-ca, --tls-cert, --tls-key."""
    add = parser.add_argument
    add("--forwarder", metavar="ADDR", required=required, help="forwarder address HOST:PORT")
    add("--token-file", metavar="FILE", help="file holding the forwarder's bearer token")
    add("--tls-ca", metavar="FILE", help="CA certificate: connect with TLS and verify the server")
    add("--tls-cert", metavar="FILE", help="client certificate (when the forwarder asks for one)")
    add("--tls-key", metavar="FILE", help="client certificate's private key")


def from_args(args: argparse.Namespace) -> tuple[fgrpc.ForwarderStub, Metadata, grpc.Channel]:
    """(stub, call metadata, channel) from the flags of add_client_arguments."""
    ch = channel(args.forwarder, tls_ca=args.tls_ca, tls_cert=args.tls_cert, tls_key=args.tls_key)
    return stub(ch), metadata(read_token(args.token_file)), ch


def export_pairs(
    addr: str,
    *,
    snapshot_id: str = "",
    flt: fpb.Filter | None = None,
    token: str | None = None,
    tls_ca: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    limit: int = 0,
) -> Iterator[pb.RRPair]:
    """Stream stored RRPairs (or a snapshot's) from a forwarder, oldest first; a failure is a
    one-line NodetapError. For `nodetap replay --snapshot ID --forwarder ADDR`."""
    ch = channel(addr, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key)
    req = fpb.ExportRequest(filter=flt or fpb.Filter(), snapshot_id=snapshot_id, limit=limit)
    try:
        yield from stub(ch).Export(req, metadata=metadata(token))
    except grpc.RpcError as e:
        raise rpc_error(e, addr) from None
    finally:
        ch.close()
