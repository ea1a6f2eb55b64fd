"""Talking to a forwarder: a connection (channel, stub, call metadata) and error wording.

Shared by `nodetap export`, `nodetap snapshot`, `nodetap replay --snapshot` and tests; the
channel itself comes from nodetap.transport.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

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


# How long an Export whose store is unavailable (a NATS node lost, the stream electing a new
# leader: seconds) is asked again before it fails; the pause between tries grows to 8 s.
STORE_RETRY_S = 60.0


def store_unavailable(e: grpc.RpcError) -> bool:
    """The forwarder answered, but its store could not serve the call now."""
    code = e.code() if hasattr(e, "code") else None
    trailers = e.trailing_metadata() if hasattr(e, "trailing_metadata") else None
    return code == grpc.StatusCode.UNAVAILABLE and any(
        k == STORE_UNAVAILABLE for k, _ in trailers or ()
    )


def rpc_error(e: grpc.RpcError, addr: str) -> PeerError:
    """A one-line PeerError for a failed call to the forwarder at addr."""
    code = e.code() if hasattr(e, "code") else None
    details = e.details() if hasattr(e, "details") else str(e)
    if store_unavailable(e):
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


def export_from(
    c: ForwarderClient,
    req: fpb.ExportRequest,
    *,
    retry_s: float = STORE_RETRY_S,
    on_retry: Callable[[PeerError, float], None] | None = None,
) -> Iterator[pb.RRPair]:
    """The RRPairs an Export request selects, oldest first; a failure is a one-line PeerError.
    A store that is unavailable before the first RRPair came is asked again for up to retry_s
    (on_retry(error, pause) is told before each pause); once RRPairs came, a failure ends the
    export (asking again would repeat them)."""
    deadline = time.monotonic() + retry_s
    pause = 1.0
    while True:
        came = False
        try:
            for pair in c.stub.Export(req, metadata=c.metadata):
                came = True
                yield pair
            return
        except grpc.RpcError as e:
            err = c.error(e)
            if came or not store_unavailable(e) or time.monotonic() + pause > deadline:
                raise err from None
            if on_retry is not None:
                on_retry(err, pause)
        time.sleep(pause)
        pause = min(2 * pause, 8.0)


def export_pairs(
    addr: str,
    *,
    snapshot_id: str = "",
    flt: fpb.Filter | None = None,
    token: str | None = None,
    tls: ClientTLS | None = None,
    limit: int = 0,
    on_retry: Callable[[PeerError, float], None] | None = None,
) -> Iterator[pb.RRPair]:
    """Stream stored RRPairs (or a snapshot's) from a forwarder, oldest first, as export_from
    does. For `nodetap replay --snapshot ID --forwarder ADDR`."""
    req = fpb.ExportRequest(filter=flt or fpb.Filter(), snapshot_id=snapshot_id, limit=limit)
    with ForwarderClient(addr, token=token, tls=tls) as c:
        yield from export_from(c, req, on_retry=on_retry)
