"""The HTTP/2 and gRPC parts of a replay item (replay/model.py): pseudo-headers taken out of
the headers (:scheme and :authority kept apart), a gRPC call's request messages, and the
recorded grpc-status, grpc-message and response messages to compare with.

Plain data and pure functions: no sockets, no files.
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nodetap.v1 import rrpair_pb2 as pb
    from replay.model import Headers, Item

# Request fields gRPC sets itself (grpcio adds its own): not sent as call metadata.
GRPC_OWN = frozenset(
    {
        "content-type",
        "te",
        "grpc-encoding",
        "grpc-accept-encoding",
        "grpc-timeout",
        "user-agent",
        "content-length",
        "accept-encoding",
    }
)


def _split(item: Item) -> None:
    """Pseudo-headers out of item.headers; :scheme and :authority into the item."""
    rest: Headers = []
    for n, v in item.headers:
        if n.startswith(":"):
            if n == ":scheme":
                item.scheme = v
            elif n == ":authority":
                item.authority = v
            continue
        rest.append((n, v))
    item.headers = rest


def _grpc(
    item: Item,
    proto: str,
    status: int,
    message: str,
    req: list[bytes],
    res: list[bytes],
    trailers: Headers | None = None,
    truncated: bool = False,
) -> None:
    item.proto = proto
    if proto != "grpc":
        return
    item.messages = req
    if item.expected is not None:
        e = item.expected
        e.grpc_status, e.grpc_message, e.messages = status, message, res
        # a call's body is its messages: the HTTP body the RRPair leaves empty says nothing
        # of a cut (only the flag does; a longer replayed message is not cut to the recorded)
        e.truncated = truncated
        e.grpc_path = item.target
        e.trailers = trailers or []


def from_json(d: dict[str, Any], item: Item) -> None:
    """Fill item's HTTP/2 fields from the JSON mapping of an http2 or grpc RRPair."""
    _split(item)
    g = d.get("grpc") if d.get("l7protocol") == "grpc" else None
    if not isinstance(g, dict):
        _grpc(item, "http2", 0, "", [], [])
        return
    b64 = base64.b64decode
    res = (d.get("http") or {}).get("res")
    trailers = res.get("trailers") if isinstance(res, dict) else None
    _grpc(
        item,
        "grpc",
        int(g.get("status") or 0),
        str(g.get("statusMessage") or ""),
        [b64(m) for m in g.get("requestMessages") or ()],
        [b64(m) for m in g.get("responseMessages") or ()],
        [(str(h.get("name") or ""), str(h.get("value") or "")) for h in trailers or ()],
        "truncated" in (d.get("flags") or ()),
    )


def from_rrpair(pair: pb.RRPair, item: Item) -> None:
    """The same from a parsed RRPair."""
    _split(item)
    if pair.l7protocol != "grpc" or not pair.HasField("grpc"):
        _grpc(item, "http2", 0, "", [], [])
        return
    g = pair.grpc
    _grpc(
        item,
        "grpc",
        g.status,
        g.status_message,
        [bytes(m) for m in g.request_messages],
        [bytes(m) for m in g.response_messages],
        [(h.name, h.value) for h in pair.http.res.trailers],
        "truncated" in pair.flags,
    )


def bin_value(v: str) -> bytes:
    """The bytes of a recorded "-bin" field: base64 (padded or not), or gRPC's true-binary
    form (a NUL, then the raw bytes; grpcio's C core uses it when both ends allow it)."""
    if v.startswith("\x00"):
        return v[1:].encode("latin-1")
    return base64.b64decode(v + "=" * (-len(v) % 4))


def metadata_text(md: Any) -> Headers:
    """grpcio's metadata (key, str or bytes) as recorded header fields: "-bin" values in
    base64 (unpadded, as on the wire)."""
    out: Headers = []
    for k, v in md or ():
        if isinstance(v, bytes):
            v = base64.b64encode(v).decode("ascii").rstrip("=")
        out.append((str(k), str(v)))
    return out


def grpc_metadata(headers: Headers) -> list[tuple[str, str | bytes]]:
    """The recorded request headers that are call metadata (custom fields): names lower-case,
    "-bin" values decoded from base64 (grpcio encodes them again)."""
    out: list[tuple[str, str | bytes]] = []
    for n, v in headers:
        low = n.lower()
        if low in GRPC_OWN or low.startswith(":"):
            continue
        if low.endswith("-bin"):
            try:
                out.append((low, bin_value(v)))
            except ValueError:
                continue
        else:
            out.append((low, v))
    return out
