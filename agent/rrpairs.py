"""Build RRPair protobuf messages from parsed exchanges and connection context.

Knows the data model (nodetap.v1) and nothing of BPF, gRPC transport or files.
"""

from __future__ import annotations

import base64
import itertools
import os
import socket
from dataclasses import dataclass, field

import orjson

from agent.protocols.http1.types import Headers, HttpExchange, HttpRequest, HttpResponse
from nodetap import rrpair_json
from nodetap.identity import Identity
from nodetap.rrpair_json import timestamp_text
from nodetap.v1 import rrpair_pb2 as pb

DIRECTIONS = {"INBOUND": pb.INBOUND, "OUTBOUND": pb.OUTBOUND, "NETWORK": pb.NETWORK}


@dataclass(slots=True)
class ConnContext:
    """What the capture knows about the connection an exchange travelled on: its facts, and
    who it belongs to (``who``, from enrichment)."""

    direction: str  # "INBOUND", "OUTBOUND" or "NETWORK"
    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    source: str  # "syscall", "tls", "packet", "pcap"
    conn_id: int = 0
    who: Identity = field(default_factory=Identity)
    agent_version: str = ""
    flags: set[str] = field(default_factory=set)  # connection-wide flags ("preexisting")
    # client, server and meta as encoded JSON, made once for all of the connection's
    # RRPairs (json_fragments); the context must not change after its first RRPair
    json_cache: tuple[orjson.Fragment, orjson.Fragment, orjson.Fragment] | None = field(
        default=None, repr=False, compare=False
    )


class RRPairIds:
    """Unique ids: a per-agent-run prefix and a counter ("<node>-<pid hex>-<n>")."""

    def __init__(self, prefix: str | None = None) -> None:
        self._prefix = prefix or f"{socket.gethostname()}-{os.getpid():x}"
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}-{next(self._counter)}"


def _headers(dst: object, headers: Headers) -> None:
    add = dst.add  # type: ignore[attr-defined]
    for name, value in headers:
        add(name=name, value=value)


def _fill_request(msg: pb.HttpRequest, req: HttpRequest) -> None:
    msg.method = req.method
    msg.url = req.url
    msg.version = req.version
    _headers(msg.headers, req.headers)
    msg.body = req.body
    msg.body_size = req.body_size
    _headers(msg.trailers, req.trailers)


def _fill_response(msg: pb.HttpResponse, res: HttpResponse) -> None:
    msg.status_code = res.status_code
    msg.status_message = res.status_message
    msg.version = res.version
    _headers(msg.headers, res.headers)
    msg.body = res.body
    msg.body_size = res.body_size
    _headers(msg.trailers, res.trailers)


def build_http_rrpair(exchange: HttpExchange, ctx: ConnContext, rrpair_id: str) -> pb.RRPair:
    """One RRPair for one HTTP/1.x exchange."""
    pair = pb.RRPair(id=rrpair_id, l7protocol="http", direction=DIRECTIONS[ctx.direction])
    pair.client.ip = ctx.client_ip
    pair.client.port = ctx.client_port
    pair.server.ip = ctx.server_ip
    pair.server.port = ctx.server_port
    meta = pair.meta
    ctx.who.fill_meta(meta)
    meta.source = ctx.source
    meta.conn_id = ctx.conn_id
    if ctx.agent_version:
        meta.agent_version = ctx.agent_version
    req, res = exchange.request, exchange.response
    start = req.start_ts_ns if req is not None else (res.start_ts_ns if res is not None else 0)
    if start:
        pair.ts.FromNanoseconds(start)
    if req is not None:
        _fill_request(pair.http.req, req)
    if res is not None:
        _fill_response(pair.http.res, res)
        if start:
            pair.duration_us = max(0, (res.end_ts_ns - start) // 1000)
            pair.ttfb_us = max(0, (res.start_ts_ns - start) // 1000)
    elif req is not None and start:
        pair.duration_us = max(0, (req.end_ts_ns - start) // 1000)
    flags = set(exchange.flags) | ctx.flags
    pair.flags.extend(sorted(flags))
    return pair


# ---- the same RRPair straight to its JSON form -------------------------------------------
#
# Building the protobuf message and then walking it to write JSON costs more than the rest
# of the capture path together. When nothing needs the message (no edge rules, no
# forwarder), the capture writes JSON from the parsed exchange directly.
# tests/model/test_rrpair_direct_json.py checks that both paths give the same JSON.

_DIRECTION_NAMES = {"INBOUND", "OUTBOUND", "NETWORK"}


def _json_headers(headers: Headers) -> list[dict[str, str]]:
    out = []
    for name, value in headers:
        d = {}
        if name:
            d["name"] = name
        if value:
            d["value"] = value
        out.append(d)
    return out


def _json_message(
    first: tuple[str, object], second: tuple[str, object], m: HttpRequest | HttpResponse
) -> dict[str, object]:
    d: dict[str, object] = {}
    for key, value in (first, second):
        if value:
            d[key] = value
    if m.version:
        d["version"] = m.version
    if m.headers:
        d["headers"] = _json_headers(m.headers)
    if m.body:
        d["body"] = base64.b64encode(m.body).decode("ascii")
    d["bodySize"] = m.body_size  # as nodetap/rrpair_json.py: a number, present when 0
    if m.trailers:
        d["trailers"] = _json_headers(m.trailers)
    return d


def json_fragments(ctx: ConnContext) -> tuple[orjson.Fragment, orjson.Fragment, orjson.Fragment]:
    """The connection's client, server and meta objects, encoded once."""
    if ctx.json_cache is None:
        ctx.json_cache = (
            orjson.Fragment(orjson.dumps(_json_endpoint(ctx.client_ip, ctx.client_port))),
            orjson.Fragment(orjson.dumps(_json_endpoint(ctx.server_ip, ctx.server_port))),
            orjson.Fragment(orjson.dumps(_json_meta(ctx))),
        )
    return ctx.json_cache


def http_rrpair_dict(
    exchange: HttpExchange,
    ctx: ConnContext,
    rrpair_id: str,
    conn_parts: tuple[object, object, object] | None = None,
) -> dict[str, object]:
    """The proto3 JSON object of build_http_rrpair(exchange, ctx, rrpair_id); with
    `conn_parts`, its client, server and meta are those (json_fragments(ctx) for orjson)."""
    req, res = exchange.request, exchange.response
    d: dict[str, object] = {}
    if rrpair_id:
        d["id"] = rrpair_id
    start = req.start_ts_ns if req is not None else (res.start_ts_ns if res is not None else 0)
    if start:
        d["ts"] = timestamp_text(start)
    if res is not None:
        duration = max(0, (res.end_ts_ns - start) // 1000) if start else 0
        ttfb = max(0, (res.start_ts_ns - start) // 1000) if start else 0
    else:
        duration = max(0, (req.end_ts_ns - start) // 1000) if req is not None and start else 0
        ttfb = 0
    if duration:
        d["durationUs"] = duration
    d["l7protocol"] = "http"
    d["direction"] = ctx.direction
    if conn_parts is None:
        conn_parts = (
            _json_endpoint(ctx.client_ip, ctx.client_port),
            _json_endpoint(ctx.server_ip, ctx.server_port),
            _json_meta(ctx),
        )
    d["client"], d["server"], d["meta"] = conn_parts
    flags = set(exchange.flags) | ctx.flags
    if flags:
        d["flags"] = sorted(flags)
    if ttfb:
        d["ttfbUs"] = ttfb
    http: dict[str, object] = {}
    if req is not None:
        http["req"] = _json_message(("method", req.method), ("url", req.url), req)
    if res is not None:
        http["res"] = _json_message(
            ("statusCode", res.status_code), ("statusMessage", res.status_message), res
        )
    if http:
        d["http"] = http
    return d


def _json_endpoint(ip: str, port: int) -> dict[str, object]:
    d: dict[str, object] = {}
    if ip:
        d["ip"] = ip
    if port:
        d["port"] = port
    return d


def _json_meta(ctx: ConnContext) -> dict[str, object]:
    # key order is part of the JSON line's bytes: keep it
    who = ctx.who
    d: dict[str, object] = {}
    if who.node:
        d["node"] = who.node
    if who.pid:
        d["pid"] = who.pid
    for key, value in (
        ("comm", who.comm),
        ("containerId", who.container_id),
        ("source", ctx.source),
        ("agentVersion", ctx.agent_version),
        ("cluster", who.cluster),
    ):
        if value:
            d[key] = value
    if who.pod or who.namespace:
        for key, value in (
            ("namespace", who.namespace),
            ("pod", who.pod),
            ("container", who.container),
            ("workload", who.workload),
        ):
            if value:
                d[key] = value
        if who.labels:
            d["labels"] = dict(who.labels)
    if ctx.conn_id:
        d["connId"] = ctx.conn_id
    return d


class CapturedExchange:
    """An exchange with its connection context and id: an RRPair built only in the forms
    asked for (the protobuf message, or its JSON line), each at most once."""

    __slots__ = ("_proto", "ctx", "exchange", "id")

    def __init__(self, exchange: HttpExchange, ctx: ConnContext, rrpair_id: str) -> None:
        self.exchange = exchange
        self.ctx = ctx
        self.id = rrpair_id
        self._proto: pb.RRPair | None = None

    def proto(self) -> pb.RRPair:
        if self._proto is None:
            self._proto = build_http_rrpair(self.exchange, self.ctx, self.id)
        return self._proto

    def has_header(self, names: frozenset[str]) -> bool:
        """Whether a header or trailer of the exchange has one of these (lower-case) names."""
        if not names:
            return False
        if self._proto is not None:
            http = self._proto.http
            return any(
                h.name.lower() in names
                for m in (http.req, http.res)
                for hs in (m.headers, m.trailers)
                for h in hs
            )
        for msg in (self.exchange.request, self.exchange.response):
            if msg is None:
                continue
            for hs in (msg.headers, msg.trailers):
                for name, _ in hs:
                    if name.lower() in names:
                        return True
        return False

    def json_line(self) -> str:
        """The JSONL line (no newline): from the message if it was built (and possibly
        changed, by redaction), else straight from the exchange."""
        if self._proto is not None:
            return rrpair_json.dumps(self._proto)
        d = http_rrpair_dict(self.exchange, self.ctx, self.id, json_fragments(self.ctx))
        return orjson.dumps(d).decode()
