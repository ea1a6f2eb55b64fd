"""RRPairs as HAR 1.2 (HTTP Archive), written as a stream (constant memory).

Each RRPair is one entry. Bodies that are UTF-8 text are written as text; others as base64
(``"encoding": "base64"``). nodetap's own fields (id, direction, flags, capture context) go in
``_nodetap``, as HAR allows custom fields that start with an underscore.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import IO, Any
from urllib.parse import parse_qsl, urlsplit

from google.protobuf import json_format

from nodetap.v1 import rrpair_pb2 as pb

CREATOR = {"name": "nodetap", "version": "0.1.0"}
# (":path" of a gRPC call, is_request, message) -> the message as JSON (or None)
Render = Callable[[str, bool, bytes], Any]


def _headers(headers: Iterable[pb.Header]) -> list[dict[str, str]]:
    return [{"name": h.name, "value": h.value} for h in headers]


def _header(headers: Iterable[pb.Header], name: str) -> str:
    lname = name.lower()
    return next((h.value for h in headers if h.name.lower() == lname), "")


def _request_cookies(headers: Iterable[pb.Header]) -> list[dict[str, str]]:
    out = []
    for h in headers:
        if h.name.lower() == "cookie":
            for part in h.value.split(";"):
                name, sep, value = part.strip().partition("=")
                if sep:
                    out.append({"name": name, "value": value})
    return out


def _response_cookies(headers: Iterable[pb.Header]) -> list[dict[str, str]]:
    out = []
    for h in headers:
        if h.name.lower() == "set-cookie":
            name, sep, rest = h.value.partition("=")
            if sep:
                out.append({"name": name.strip(), "value": rest.split(";", 1)[0]})
    return out


def _text(body: bytes) -> tuple[str, str | None]:
    """(text, encoding): UTF-8 text as is, anything else base64."""
    try:
        return body.decode("utf-8"), None
    except UnicodeDecodeError:
        return base64.b64encode(body).decode("ascii"), "base64"


def _absolute_url(pair: pb.RRPair) -> str:
    target = pair.http.req.url
    if "://" in target:
        return target
    hs = pair.http.req.headers
    # HTTP/2: the :scheme and :authority pseudo-headers stand for the scheme and Host
    scheme = _header(hs, ":scheme") or ("https" if pair.meta.source == "tls" else "http")
    host = _header(hs, "Host") or _header(hs, ":authority")
    if not host:
        ip = pair.server.ip or "localhost"
        host = f"[{ip}]" if ":" in ip else ip
        if pair.server.port:
            host += f":{pair.server.port}"
    if not target.startswith("/"):
        target = "/" + target if target != "*" else "/"
    return f"{scheme}://{host}{target}"


def _version(pair: pb.RRPair) -> str:
    return "HTTP/2" if pair.l7protocol in ("http2", "grpc") else "HTTP/1.1"


def _iso(pair: pb.RRPair) -> str:
    ns = pair.ts.ToNanoseconds()
    dt = datetime.fromtimestamp(ns / 1e9, tz=UTC)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _grpc(pair: pb.RRPair, render: Render | None) -> dict[str, Any]:
    """A gRPC call's service, method, status and messages (base64, and as JSON with
    --proto-descriptors) for the entry's _nodetap."""
    g = pair.grpc
    out: dict[str, Any] = json_format.MessageToDict(g)
    out.setdefault("status", g.status)
    if render is not None:
        path = f"/{g.service}/{g.method}"
        out["requestJson"] = [render(path, True, bytes(m)) for m in g.request_messages]
        out["responseJson"] = [render(path, False, bytes(m)) for m in g.response_messages]
    return out


def entry(pair: pb.RRPair, render: Render | None = None) -> dict[str, Any]:
    """One HAR 1.2 entry for one RRPair (an http2 or grpc pair: httpVersion "HTTP/2", the
    pseudo-headers among the headers; a gRPC call's messages in _nodetap.grpc)."""
    req, res = pair.http.req, pair.http.res
    has_res = pair.http.HasField("res")
    url = _absolute_url(pair) if pair.http.HasField("req") else "http://unknown/"
    query = urlsplit(url).query
    request: dict[str, Any] = {
        "method": req.method or "GET",
        "url": url,
        "httpVersion": req.version or _version(pair),
        "cookies": _request_cookies(req.headers),
        "headers": _headers(req.headers),
        "queryString": [
            {"name": k, "value": v} for k, v in parse_qsl(query, keep_blank_values=True)
        ],
        "headersSize": -1,
        "bodySize": int(req.body_size) if req.body or req.body_size else 0,
    }
    if req.body:
        text, enc = _text(req.body)
        post: dict[str, Any] = {
            "mimeType": _header(req.headers, "Content-Type") or "application/octet-stream",
            "text": text,
        }
        if enc:
            post["encoding"] = enc
        request["postData"] = post
    content: dict[str, Any] = {
        "size": int(res.body_size),
        "mimeType": _header(res.headers, "Content-Type") or "x-unknown",
    }
    if res.body:
        text, enc = _text(res.body)
        content["text"] = text
        if enc:
            content["encoding"] = enc
    response: dict[str, Any] = {
        "status": int(res.status_code) if has_res else 0,
        "statusText": res.status_message,
        "httpVersion": res.version or req.version or _version(pair),
        "cookies": _response_cookies(res.headers),
        "headers": _headers(res.headers),
        "content": content,
        "redirectURL": _header(res.headers, "Location"),
        "headersSize": -1,
        "bodySize": int(res.body_size) if has_res else -1,
    }
    # microseconds as milliseconds with 3 decimals: no 0.00899999999999998 from subtraction
    total_ms = pair.duration_us / 1000.0
    wait_ms = min(pair.ttfb_us / 1000.0, total_ms)
    receive_ms = round(max(0, pair.duration_us - min(pair.ttfb_us, pair.duration_us)) / 1000.0, 3)
    meta = json_format.MessageToDict(pair.meta)
    out: dict[str, Any] = {
        "startedDateTime": _iso(pair),
        "time": total_ms,
        "request": request,
        "response": response,
        "cache": {},
        "timings": {
            "blocked": -1,
            "dns": -1,
            "connect": -1,
            "ssl": -1,
            "send": 0,
            "wait": wait_ms,
            "receive": receive_ms,
        },
        "_nodetap": {
            "id": pair.id,
            "direction": pb.Direction.Name(pair.direction),
            "flags": list(pair.flags),
            "client": f"{pair.client.ip}:{pair.client.port}",
            "meta": meta,
        },
    }
    if pair.l7protocol:
        out["_nodetap"]["l7protocol"] = pair.l7protocol
    if pair.HasField("grpc"):
        out["_nodetap"]["grpc"] = _grpc(pair, render)
    if pair.server.ip:
        out["serverIPAddress"] = pair.server.ip
    if pair.meta.conn_id:
        out["connection"] = str(pair.meta.conn_id)
    if pair.flags:
        out["comment"] = "flags: " + ", ".join(pair.flags)
    return out


def write(pairs: Iterable[pb.RRPair], fp: IO[str], render: Render | None = None) -> int:
    """Write a HAR 1.2 document of the HTTP RRPairs (HTTP/1.x, HTTP/2 and gRPC); return the
    number of entries. render: gRPC messages as JSON (nodetap/grpc_json.py)."""
    fp.write('{"log": {"version": "1.2", "creator": ')
    fp.write(json.dumps(CREATOR))
    fp.write(', "pages": [], "entries": [\n')
    n = 0
    for pair in pairs:
        if pair.WhichOneof("payload") != "http":
            continue
        if n:
            fp.write(",\n")
        fp.write(json.dumps(entry(pair, render), ensure_ascii=False))
        n += 1
    fp.write("\n]}}\n")
    return n
