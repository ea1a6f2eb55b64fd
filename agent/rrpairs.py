"""Build RRPair protobuf messages from parsed exchanges and connection context.

Knows the data model (nodetap.v1) and nothing of BPF, gRPC transport or files.
"""

from __future__ import annotations

import itertools
import os
import socket
from dataclasses import dataclass, field

from agent.protocols.http1.types import Headers, HttpExchange, HttpRequest, HttpResponse
from nodetap.v1 import rrpair_pb2 as pb

DIRECTIONS = {"INBOUND": pb.INBOUND, "OUTBOUND": pb.OUTBOUND, "NETWORK": pb.NETWORK}


@dataclass(slots=True)
class ConnContext:
    """What the capture knows about the connection an exchange travelled on."""

    direction: str  # "INBOUND", "OUTBOUND" or "NETWORK"
    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    source: str  # "syscall", "tls", "packet", "pcap"
    conn_id: int = 0
    pid: int = 0
    comm: str = ""
    node: str = ""
    container_id: str = ""
    namespace: str = ""
    pod: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    container: str = ""
    workload: str = ""
    cluster: str = ""
    agent_version: str = ""
    flags: set[str] = field(default_factory=set)  # connection-wide flags ("preexisting")


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
    meta.node = ctx.node
    meta.pid = ctx.pid
    meta.comm = ctx.comm
    meta.container_id = ctx.container_id
    meta.source = ctx.source
    meta.conn_id = ctx.conn_id
    if ctx.pod or ctx.namespace:
        meta.namespace = ctx.namespace
        meta.pod = ctx.pod
        meta.labels.update(ctx.labels)
        meta.container = ctx.container
        meta.workload = ctx.workload
    if ctx.cluster:
        meta.cluster = ctx.cluster
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
