"""Expectations on captured RRPairs: equal to what a client sent and read, and the two
sides of one exchange (INBOUND in the server, OUTBOUND in the client) equal to each other."""

from __future__ import annotations

import hashlib

from nodetap.v1 import rrpair_pb2 as pb
from tests.capture.clients import CurlExchange, Headers, Response

# Counters that must stay at zero when nothing was lost.
LOSS_COUNTERS = (
    "drop_ringbuf_data_records",
    "drop_ringbuf_control_records",
    "drop_truncated_bytes",
    "drop_iov_bytes",
    "drop_read_fault_pieces",
    "drop_sendfile_bytes",
    "drop_conn_table_full",
    "orphan_records",
    "stream_gaps",
    "conns_not_http",
)


def hdrs(msg: pb.HttpRequest | pb.HttpResponse) -> Headers:
    return [(h.name, h.value) for h in msg.headers]


def assert_agree(inb: pb.RRPair, out: pb.RRPair, flags: list[str]) -> None:
    """INBOUND (server process) and OUTBOUND (client process) saw the same exchange."""
    assert inb.http == out.http
    assert inb.client == out.client
    assert inb.server == out.server
    assert list(inb.flags) == list(out.flags) == flags
    for p in (inb, out):
        assert p.l7protocol == "http"
        assert p.meta.source == "syscall"
        assert p.meta.pid > 0
        assert p.duration_us >= p.ttfb_us >= 0
        assert p.client.port != 0 and p.server.port != 0
    assert inb.id != out.id


def assert_request(p: pb.RRPair, method: str, url: str, headers: Headers, body: bytes) -> None:
    req = p.http.req
    assert (req.method, req.url, req.version) == (method, url, "HTTP/1.1")
    assert hdrs(req) == headers
    assert req.body_size == len(body)
    assert hashlib.sha256(req.body).hexdigest() == hashlib.sha256(body).hexdigest()


def assert_response(p: pb.RRPair, res: Response) -> None:
    got = p.http.res
    assert (got.status_code, got.status_message, got.version) == (
        res.status,
        res.reason,
        res.version,
    )
    assert hdrs(got) == res.headers
    assert got.body_size == len(res.body)
    assert hashlib.sha256(got.body).hexdigest() == hashlib.sha256(res.body).hexdigest()


def assert_curl_exchange(p: pb.RRPair, ex: CurlExchange, req_body: bytes, res_body: bytes) -> None:
    """The RRPair holds what curl's -v trace says it sent and (finally) received."""
    assert_request(p, ex.method, ex.url, ex.headers, req_body)
    final = ex.final
    version, _, reason = final.status_line.split(" ", 2)
    assert_response(p, Response(final.status, reason, version, final.headers, res_body))


# ---- methods ---------------------------------------------------------------------------------
