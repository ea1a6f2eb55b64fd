"""The capture's fast path (JSON straight from the parsed exchange) writes exactly what the
protobuf path writes (build_http_rrpair, then the proto3 JSON mapping)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.protocols.http1.types import HttpExchange, HttpRequest, HttpResponse
from agent.rrpairs import CapturedExchange, ConnContext, build_http_rrpair
from nodetap import rrpair_json
from nodetap.identity import Identity

text = st.text(max_size=10)
headers = st.lists(st.tuples(text, text), max_size=4)
ts = st.one_of(st.just(0), st.integers(1, 4_000_000_000 * 10**9))
flags = st.sets(st.sampled_from(["gap", "incomplete", "truncated", "upgrade"]))


@st.composite
def requests(draw: st.DrawFn) -> HttpRequest:
    return HttpRequest(
        method=draw(text), url=draw(text), version=draw(text), headers=draw(headers),
        body=draw(st.binary(max_size=20)), body_size=draw(st.integers(0, 2**40)),
        trailers=draw(headers), start_ts_ns=draw(ts), end_ts_ns=draw(ts), flags=draw(flags),
    )  # fmt: skip


@st.composite
def responses(draw: st.DrawFn) -> HttpResponse:
    return HttpResponse(
        status_code=draw(st.integers(0, 999)), status_message=draw(text),
        version=draw(text), headers=draw(headers), body=draw(st.binary(max_size=20)),
        body_size=draw(st.integers(0, 2**40)), trailers=draw(headers),
        start_ts_ns=draw(ts), end_ts_ns=draw(ts), flags=draw(flags),
    )  # fmt: skip


@st.composite
def contexts(draw: st.DrawFn) -> ConnContext:
    return ConnContext(
        direction=draw(st.sampled_from(["INBOUND", "OUTBOUND", "NETWORK"])),
        client_ip=draw(text), client_port=draw(st.integers(0, 65535)),
        server_ip=draw(text), server_port=draw(st.integers(0, 65535)),
        source=draw(text), conn_id=draw(st.integers(0, 2**64 - 1)),
        who=Identity(
            pid=draw(st.integers(0, 2**32 - 1)), comm=draw(text), node=draw(text),
            container_id=draw(text), namespace=draw(text), pod=draw(text),
            labels=draw(st.dictionaries(text, text, max_size=2)), container=draw(text),
            workload=draw(text), cluster=draw(text),
        ),
        agent_version=draw(text), flags=draw(flags),
    )  # fmt: skip


@settings(max_examples=400, deadline=None)
@given(
    st.one_of(st.none(), requests()),
    st.one_of(st.none(), responses()),
    flags,
    contexts(),
    text,
)
def test_direct_json_equals_the_protobuf_path(
    req: HttpRequest | None,
    res: HttpResponse | None,
    ex_flags: set[str],
    ctx: ConnContext,
    rrpair_id: str,
) -> None:
    ex = HttpExchange(req, res, ex_flags)
    want = json.loads(rrpair_json.dumps(build_http_rrpair(ex, ctx, rrpair_id)))
    assert json.loads(CapturedExchange(ex, ctx, rrpair_id).json_line()) == want
    # the connection's parts are encoded once and reused for its next RRPairs
    other = HttpExchange(None, res, {"gap"})
    want = json.loads(rrpair_json.dumps(build_http_rrpair(other, ctx, "next")))
    assert json.loads(CapturedExchange(other, ctx, "next").json_line()) == want


def test_a_built_message_wins_over_the_exchange() -> None:
    ex = HttpExchange(HttpRequest("GET", "/a", "HTTP/1.1", [], b"", 0), None)
    ctx = ConnContext("INBOUND", "1.2.3.4", 1, "5.6.7.8", 2, "syscall")
    c = CapturedExchange(ex, ctx, "x")
    c.proto().http.req.url = "/redacted"
    assert json.loads(c.json_line())["http"]["req"]["url"] == "/redacted"
