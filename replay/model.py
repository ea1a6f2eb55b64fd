"""Replay items: a request rebuilt from an RRPair, and the recorded response to compare with.

Plain data and pure functions: no sockets, no files.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from nodetap.v1 import rrpair_pb2 as pb
from replay import h2_items

Headers = list[tuple[str, str]]

# Hop-by-hop fields (RFC 9110 7.6.1) are the recording connection's business, not the request's:
# the replay sets its own Connection and framing.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "proxy-authenticate",
        "proxy-authorization",
    }
)
FRAMING = HOP_BY_HOP | {"content-length"}
METHODS_WITHOUT_BODY = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE", "CONNECT"})

# What may go on the wire as recorded (RFC 9110 5.1, 5.5, 9.1; RFC 9112 3.2): a method and a
# field name are tokens; a request target has no spaces or controls; a field value has no CR,
# LF or NUL (other controls and obs-text pass, as servers accept them). Anything else would
# let recorded bytes start a new header or a new request in the target's parser.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(r"[\x21-\x7e\x80-\xff]+")
_VALUE_BAD = re.compile(r"[\r\n\x00]|[^\x00-\xff]")


class UnsafeRequest(ValueError):
    """A recorded request whose bytes cannot be sent as they are; ``reason`` names the part
    (for the report's counters)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(slots=True)
class Expected:
    """The recorded response, reduced to what comparison needs."""

    status: int
    headers: Headers
    body: bytes | None  # None when only the hash is kept (large body or --summary-only)
    body_sha256: str
    body_size: int
    truncated: bool = False  # the recording cut the body: compare sizes only
    norm_headers: dict[str, str] | None = None  # compared headers, normalised once
    # gRPC calls (replay/h2_items.py): the recorded grpc-status (None: not a gRPC call),
    # grpc-message, the response messages and the call's :path (for --proto-descriptors)
    grpc_status: int | None = None
    grpc_message: str = ""
    messages: list[bytes] | None = None
    grpc_path: str = ""
    trailers: Headers | None = None  # a gRPC call's recorded trailers (metadata)
    norm_meta: dict[str, tuple[str, str]] | None = None  # compared metadata, normalised once


@dataclass(slots=True)
class Item:
    """One request to replay."""

    index: int  # position in the capture (0-based)
    id: str
    ts_ns: int  # recorded time of the first request byte (0 when unknown)
    conn_id: int
    method: str
    target: str  # request target as recorded
    version: str
    headers: Headers  # recorded order, hop-by-hop removed
    body: bytes
    recorded_close: bool  # the recorded exchange ended its connection
    expected: Expected | None
    wire: dict[bool, bytes] | None = None  # encoded request by keep-alive, once rewritten
    # HTTP/2 and gRPC (replay/h2_items.py): "http1", "http2" or "grpc"; the recorded :scheme
    # and :authority (pseudo-headers are not in `headers`); a gRPC call's request messages
    proto: str = "http1"
    scheme: str = "http"
    authority: str | None = None
    messages: list[bytes] | None = None


def _recorded_close(req: pb.HttpRequest, res: pb.HttpResponse | None) -> bool:
    def tokens(hs: object) -> set[str]:
        out: set[str] = set()
        for h in hs:  # type: ignore[attr-defined]
            if h.name.lower() == "connection":
                out |= {t.strip().lower() for t in h.value.split(",")}
        return out

    if "close" in tokens(req.headers) or (res is not None and "close" in tokens(res.headers)):
        return True
    return req.version == "HTTP/1.0" and "keep-alive" not in tokens(req.headers)


def item_from_rrpair(
    pair: pb.RRPair, index: int, keep_body_limit: int = 64 * 1024, summary_only: bool = False
) -> Item | None:
    """The replayable request of an RRPair, or None when it holds no HTTP request."""
    if pair.WhichOneof("payload") != "http" or not pair.http.HasField("req"):
        return None
    req = pair.http.req
    res = pair.http.res if pair.http.HasField("res") else None
    # Framing is the replay's own: Content-Length is recomputed from the (rewritten) body.
    headers = [(h.name, h.value) for h in req.headers if h.name.lower() not in FRAMING]
    expected = None
    if res is not None:
        body = bytes(res.body)
        keep = not summary_only and len(body) <= keep_body_limit
        expected = Expected(
            status=res.status_code,
            headers=[(h.name, h.value) for h in res.headers],
            body=body if keep else None,
            body_sha256=hashlib.sha256(body).hexdigest(),
            body_size=res.body_size or len(body),
            truncated="truncated" in pair.flags or len(body) < res.body_size,
        )
    ts = pair.ts.ToNanoseconds() if pair.HasField("ts") else 0
    item = Item(
        index=index,
        id=pair.id,
        ts_ns=ts,
        conn_id=pair.meta.conn_id,
        method=req.method,
        target=req.url or "/",
        version=req.version or "HTTP/1.1",
        headers=headers,
        body=bytes(req.body),
        recorded_close=_recorded_close(req, res),
        expected=expected,
    )
    if pair.l7protocol in ("http2", "grpc"):
        h2_items.from_rrpair(pair, item)
    return item


def _b64(v: str | None) -> bytes:
    return base64.b64decode(v) if v else b""


def _ts_ns(text: str) -> int:
    base, _, frac = text.rstrip("Z").partition(".")
    sec = int(datetime.fromisoformat(base + "+00:00").timestamp())
    return sec * 1_000_000_000 + int((frac + "000000000")[:9])


def _text(v: Any, default: str = "") -> str:
    """A string field of the JSON mapping; TypeError for anything else (the caller then lets
    protobuf's parser say what is wrong)."""
    if v is None:
        return default
    if not isinstance(v, str):
        raise TypeError(f"expected a string, got {type(v).__name__}")
    return v or default


def _hs(items: list[dict[str, str]] | None) -> Headers:
    return [(_text(h.get("name")), _text(h.get("value"))) for h in items or ()]


def item_from_json(
    d: dict[str, Any], index: int, keep_body_limit: int = 64 * 1024, summary_only: bool = False
) -> Item | None:
    """The same as item_from_rrpair, from the proto3 JSON mapping parsed by json.loads (the
    replay's fast path: protobuf's JSON parser costs ~10x more per pair)."""
    http = d.get("http")
    if not isinstance(http, dict) or not isinstance(http.get("req"), dict):
        return None
    req, res = http["req"], http.get("res")
    req_hs = _hs(req.get("headers"))
    res_hs = _hs(res.get("headers")) if isinstance(res, dict) else []

    def close_in(hs: Headers) -> bool:
        return any(n.lower() == "connection" and "close" in v.lower() for n, v in hs)

    version = _text(req.get("version"), "HTTP/1.1")
    keep = any(n.lower() == "connection" and "keep-alive" in v.lower() for n, v in req_hs)
    recorded_close = close_in(req_hs) or close_in(res_hs) or (version == "HTTP/1.0" and not keep)
    expected = None
    if isinstance(res, dict):
        body = _b64(res.get("body"))
        size = int(res.get("bodySize") or 0)
        expected = Expected(
            status=int(res.get("statusCode") or 0),
            headers=res_hs,
            body=body if not summary_only and len(body) <= keep_body_limit else None,
            body_sha256=hashlib.sha256(body).hexdigest(),
            body_size=size or len(body),
            truncated="truncated" in (d.get("flags") or ()) or len(body) < size,
        )
    ts = d.get("ts")
    item = Item(
        index=index,
        id=str(d.get("id", "")),
        ts_ns=_ts_ns(ts) if ts else 0,
        conn_id=int((d.get("meta") or {}).get("connId") or 0),
        method=_text(req.get("method"), "GET"),
        target=_text(req.get("url"), "/"),
        version=version,
        headers=[(n, v) for n, v in req_hs if n.lower() not in FRAMING],
        body=_b64(req.get("body")),
        recorded_close=recorded_close,
        expected=expected,
    )
    if d.get("l7protocol") in ("http2", "grpc"):
        h2_items.from_json(d, item)
    return item


def origin_form(target: str) -> str:
    """The origin-form of a request target ("http://h/a?b" -> "/a?b")."""
    if target.startswith(("http://", "https://")):
        rest = target.split("://", 1)[1]
        slash = rest.find("/")
        return rest[slash:] if slash >= 0 else "/"
    return target


def unsafe_field(name: str, value: str) -> tuple[str, str] | None:
    """(reason, detail) when a header cannot go on the wire as recorded; None when it can."""
    if not _TOKEN.fullmatch(name):
        return "header name", f"{name[:40]!r} is not a token"
    bad = _VALUE_BAD.search(value)
    if bad:
        return "header value", f"{bad.group()!r} in the value of {name} at offset {bad.start()}"
    return None


def unsafe_text(text: str) -> str | None:
    """What in a status line's reason (or other free text) would split a message, if any."""
    bad = _VALUE_BAD.search(text)
    return f"{bad.group()!r} at offset {bad.start()}" if bad else None


def _check_field(name: str, value: str) -> None:
    why = unsafe_field(name, value)
    if why is not None:
        raise UnsafeRequest(*why)


def encode_request(item: Item, host: str, keep_alive: bool) -> bytes:
    """The request's wire bytes: Host replaced in place (or added first), Content-Length
    set from the body, the replay's own Connection field. UnsafeRequest when the method,
    target or a header holds bytes that would change how the target splits the request
    (CR, LF, spaces or controls where the grammar has none)."""
    if not _TOKEN.fullmatch(item.method):
        raise UnsafeRequest("method", f"{item.method[:40]!r} is not a token")
    target = origin_form(item.target)
    if not _TARGET.fullmatch(target):
        raise UnsafeRequest(
            "request target",
            f"{target[:80]!r} holds a space, a control or a non-ISO-8859-1 character",
        )
    out = [f"{item.method} {target} HTTP/1.1\r\n"]
    saw_host = False
    for name, value in item.headers:
        low = name.lower()
        if low == "host":
            if saw_host:
                continue
            saw_host = True
            value = host
        elif low == "content-length":
            continue
        _check_field(name, value)
        out.append(f"{name}: {value}\r\n")
    if not saw_host:
        out.insert(1, f"Host: {host}\r\n")
    _check_field("Host", host)
    if item.body or item.method not in METHODS_WITHOUT_BODY:
        out.append(f"Content-Length: {len(item.body)}\r\n")
    if not keep_alive:
        out.append("Connection: close\r\n")
    out.append("\r\n")
    return "".join(out).encode("latin-1") + item.body
