"""Talking to a forwarder: a connection (channel, stub, call metadata) and error wording.

Shared by `nodetap export`, `nodetap snapshot`, `nodetap replay --snapshot` and tests; the
channel itself comes from nodetap.transport.
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from nodetap import transport
from nodetap.errors import PeerError
from nodetap.transport import ClientTLS, Metadata
from nodetap.v1 import forwarder_pb2 as fpb
from nodetap.v1 import forwarder_pb2_grpc as fgrpc
from nodetap.v1 import rrpair_pb2 as pb


def stub(ch: grpc.Channel) -> fgrpc.ForwarderStub:
    return fgrpc.ForwarderStub(ch)  # type: ignore[no-untyped-call]


# trailing metadata of an UNAVAILABLE answer that the forwarder's store gave (NATS failing
# over or down): the forwarder runs, the call may be made again
STORE_UNAVAILABLE = "nodetap-store-unavailable"


def rpc_error(e: grpc.RpcError, addr: str) -> PeerError:
    """A one-line PeerError for a failed call to the forwarder at addr."""
    code = e.code() if hasattr(e, "code") else None
    details = e.details() if hasattr(e, "details") else str(e)
    trailers = e.trailing_metadata() if hasattr(e, "trailing_metadata") else None
    if code == grpc.StatusCode.UNAVAILABLE and any(
        k == STORE_UNAVAILABLE for k, _ in trailers or ()
    ):
        return PeerError(f"forwarder {addr}: store unavailable ({details})")
    if code == grpc.StatusCode.UNAVAILABLE:
        return PeerError(f"forwarder {addr} unreachable ({details}); is it running there?")
    if code == grpc.StatusCode.UNAUTHENTICATED:
        return PeerError(f"forwarder {addr} refused the token ({details}); pass --token-file")
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return PeerError(f"forwarder {addr}: message too large ({details}); raise the size limit")
    name = code.name if code is not None else "ERROR"
    return PeerError(f"forwarder {addr}: {name}: {details}")


class ForwarderClient:
    """A connection to the forwarder at addr: ``.stub``, ``.metadata`` (the token) to pass to
    each call, ``.error(e)`` for a failed call; ``close()`` (or ``with``) closes the channel."""

    def __init__(self, addr: str, *, token: str | None = None, tls: ClientTLS | None = None):
        self.addr = addr
        self.channel = transport.channel(addr, tls=tls)
        self.stub = stub(self.channel)
        self.metadata: Metadata = transport.bearer_metadata(token)

    def error(self, e: grpc.RpcError) -> PeerError:
        return rpc_error(e, self.addr)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> ForwarderClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def export_pairs(
    addr: str,
    *,
    snapshot_id: str = "",
    flt: fpb.Filter | None = None,
    token: str | None = None,
    tls: ClientTLS | None = None,
    limit: int = 0,
) -> Iterator[pb.RRPair]:
    """Stream stored RRPairs (or a snapshot's) from a forwarder, oldest first; a failure is a
    one-line PeerError. For `nodetap replay --snapshot ID --forwarder ADDR`."""
    req = fpb.ExportRequest(filter=flt or fpb.Filter(), snapshot_id=snapshot_id, limit=limit)
    with ForwarderClient(addr, token=token, tls=tls) as c:
        try:
            yield from c.stub.Export(req, metadata=c.metadata)
        except grpc.RpcError as e:
            raise c.error(e) from None
