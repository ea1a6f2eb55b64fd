"""The core's HTTP/2 and gRPC decoder on the byte streams of real peers: grpcio server and
client, nghttp2's h2load and nghttpd, curl --http2-prior-knowledge. Each conversation goes
through a recording loopback relay (tests/support/relay.py); the recorded streams become
ring records (tests/core/h2_feed.py: the one function to swap for live capture) and the
RRPairs are compared with what the peers themselves sent and received, from both sides
(INBOUND as the server's capture, OUTBOUND as the client's)."""

from __future__ import annotations

import base64
import json
import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from nodetap.v1 import rrpair_pb2 as pb
from tests.core.h2_feed import CLIENT, SERVER, decode
from tests.support.nghttpd import nghttpd as serve_h2c
from tests.support.peers import go_grpc, grpc_echo
from tests.support.relay import Relay

ROLES = [(SERVER, pb.INBOUND), (CLIENT, pb.OUTBOUND)]
Call = tuple[str, list[bytes], list[bytes], int, str]  # method, requests, responses, code, message


def _msg(rng: random.Random, n: int) -> bytes:
    return rng.randbytes(n)


def _calls(port: int, compression: grpc.Compression | None) -> list[Call]:
    """Every kind of call through one channel (one connection); returns what the client
    sent and received: (method, requests, responses, status code, status message)."""
    rng = random.Random(7)
    done: list[Call] = []
    with grpc.insecure_channel(
        f"127.0.0.1:{port}", options=grpc_echo.OPTIONS, compression=compression
    ) as ch:
        path = f"/{grpc_echo.SERVICE}/"
        unary = ch.unary_unary(path + "Unary")
        a = _msg(rng, 100)
        done.append(("Unary", [a], [unary(a, timeout=30)], 0, ""))
        big = _msg(rng, 4 << 20)
        done.append(("Unary", [big], [unary(big, timeout=60)], 0, ""))
        s = _msg(rng, 10)
        got = list(ch.unary_stream(path + "ServerStream")(s, timeout=30))
        done.append(("ServerStream", [s], got, 0, ""))
        parts = [_msg(rng, n) for n in (1, 0, 5000, 70000)]
        done.append(
            (
                "ClientStream",
                parts,
                [ch.stream_unary(path + "ClientStream")(iter(parts), timeout=30)],
                0,
                "",
            )
        )
        words = [b"abc", b"", b"xyz" * 1000]
        got = list(ch.stream_stream(path + "Bidi")(iter(words), timeout=30))
        done.append(("Bidi", words, got, 0, ""))
        with pytest.raises(grpc.RpcError) as e:
            ch.unary_unary(path + "Fail")(b"thing", timeout=30)
        err = e.value
        assert isinstance(err, grpc.Call)
        done.append(("Fail", [b"thing"], [], err.code().value[0], err.details() or ""))
        # many calls multiplexed on the one connection
        futs = [(m, unary.future(m, timeout=30)) for m in (_msg(rng, 50 + i) for i in range(40))]
        for m, f in futs:
            done.append(("Unary", [m], [f.result()], 0, ""))
    return done


@pytest.fixture(params=["identity", "gzip"])
def grpc_conversation(request: pytest.FixtureRequest) -> Iterator[tuple[Relay, list[Call], str]]:
    comp = grpc.Compression.Gzip if request.param == "gzip" else None
    server, port = grpc_echo.serve(compression=comp)
    try:
        with Relay(("127.0.0.1", port)) as relay:
            calls = _calls(relay.port, comp)
            relay.wait_closed()
            yield relay, calls, request.param
    finally:
        server.stop(0)


def assert_calls(pairs: list[pb.RRPair], calls: list[Call], direction: int) -> None:
    """One RRPair per call, each exact: service, method, every message's bytes, status and
    message (calls multiplexed: compared as sorted lists)."""
    assert len(pairs) == len(calls), [p.grpc.method for p in pairs]
    got = sorted(
        (
            p.grpc.method,
            list(p.grpc.request_messages),
            list(p.grpc.response_messages),
            p.grpc.status,
            p.grpc.status_message,
        )
        for p in pairs
    )
    for g, w in zip(got, sorted(calls), strict=True):
        assert g[0] == w[0] and g[3:] == w[3:], (g[0], g[3:], w[3:])
        assert g[1] == w[1], f"{w[0]}: request messages differ"
        assert g[2] == w[2], f"{w[0]}: response messages differ"
    for p in pairs:
        assert p.l7protocol == "grpc"
        assert p.direction == direction
        assert p.grpc.service == grpc_echo.SERVICE
        assert list(p.flags) == [], (p.grpc.method, list(p.flags))
        assert p.http.req.method == "POST" and p.http.res.status_code == 200
        assert p.http.req.version == "HTTP/2"
    fail = next(p for p in pairs if p.grpc.method == "Fail")
    assert fail.grpc.status == grpc.StatusCode.NOT_FOUND.value[0]
    assert fail.grpc.status_message == "no such thing: thing ✓"


@pytest.mark.slow
@pytest.mark.parametrize(("role", "direction"), ROLES)
def test_grpcio_calls_exact(
    grpc_conversation: tuple[Relay, list[Call], str], role: int, direction: int
) -> None:
    relay, calls, compression = grpc_conversation
    assert len(relay.conns) == 1
    pairs, counters = decode(relay.conns, role, max_body=8 << 20)
    assert counters["conns_h2"] == 1 and counters["h2_conns_failed"] == 0
    assert_calls(pairs, calls, direction)
    if compression == "gzip":
        assert {p.grpc.encoding for p in pairs if p.grpc.method != "Fail"} == {"gzip"}


@pytest.fixture(scope="module")
def go_conversation() -> tuple[Relay, list[Call]]:
    with go_grpc.grpc_server() as port, Relay(("127.0.0.1", port)) as relay:
        calls = go_grpc.client_calls(relay.port)
        relay.wait_closed()
    return relay, calls


@pytest.mark.slow
@pytest.mark.parametrize(("role", "direction"), ROLES)
def test_grpc_go_calls_exact(
    go_conversation: tuple[Relay, list[Call]], role: int, direction: int
) -> None:
    """grpc-go server and client (built from tests/support/peers/go_grpc): unary (100 B,
    4 MiB, gzip), error status with message, server/client/bidi streaming, 40 multiplexed."""
    relay, calls = go_conversation
    assert len(relay.conns) == 1 and len(calls) == 47
    pairs, counters = decode(relay.conns, role, max_body=8 << 20)
    assert counters["conns_h2"] == 1 and counters["h2_conns_failed"] == 0
    assert_calls(pairs, calls, direction)
    assert sum(p.grpc.encoding == "gzip" for p in pairs) == 1


@pytest.mark.parametrize(("role", "direction"), ROLES)
def test_h2c_upgrade_curl_to_go(role: int, direction: int, tmp_path: Path) -> None:
    """curl --http2 on http:// asks `Upgrade: h2c`; Go's h2c server answers 101 and the
    connection goes on in HTTP/2: the upgrade request is stream 1, then stream 3."""
    (tmp_path / "hello.txt").write_bytes(b"hello over h2c\n" * 100)
    with go_grpc.h2c_server(tmp_path) as port, Relay(("127.0.0.1", port)) as relay:
        url = f"http://127.0.0.1:{relay.port}/hello.txt"
        subprocess.run(
            ["curl", "-sS", "--http2", "-o", os.devnull, "-o", os.devnull, url, url],
            check=True,
            timeout=60,
        )
        relay.wait_closed()
    assert len(relay.conns) == 1
    pairs, counters = decode(relay.conns, role)
    assert counters["conns_h2"] == 1
    assert [(p.l7protocol, p.http.res.status_code) for p in pairs] == [
        ("http", 101),
        ("http2", 200),
        ("http2", 200),
    ]
    assert list(pairs[0].flags) == ["upgrade"]
    for p in pairs[1:]:
        assert p.direction == direction and list(p.flags) == []
        assert (p.http.req.method, p.http.req.url) == ("GET", "/hello.txt")
        assert p.http.res.body == b"hello over h2c\n" * 100
    # stream 1 is the HTTP/1.1 request that asked for the upgrade
    assert any(h.name.lower() == "upgrade" for h in pairs[1].http.req.headers)


def test_go_h2c_prior_knowledge(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_bytes(b"a" * 50_000)
    with go_grpc.h2c_server(tmp_path) as port, Relay(("127.0.0.1", port)) as relay:
        subprocess.run(
            ["curl", "-sS", "--http2-prior-knowledge", "-o", os.devnull,
             f"http://127.0.0.1:{relay.port}/a.txt"],
            check=True,
            timeout=60,
        )  # fmt: skip
        relay.wait_closed()
    (p,) = decode(relay.conns, SERVER)[0]
    assert (p.l7protocol, p.http.res.status_code, p.http.res.body) == ("http2", 200, b"a" * 50_000)
    assert list(p.flags) == []


def test_grpc_json_lines_carry_messages_as_base64() -> None:
    server, port = grpc_echo.serve()
    try:
        with Relay(("127.0.0.1", port)) as relay:
            with grpc.insecure_channel(f"127.0.0.1:{relay.port}") as ch:
                assert (
                    ch.unary_unary(f"/{grpc_echo.SERVICE}/Unary")(b"hello", timeout=30) == b"olleh"
                )
            relay.wait_closed()
    finally:
        server.stop(0)
    import nodetap_core

    from tests.core.h2_feed import records
    from tests.core.paths import MONO_TO_WALL, PREFIX

    dec = nodetap_core.Decoder(1 << 20, PREFIX, MONO_TO_WALL, protobuf=True, jsonl=True)
    dec.feed_records(records(relay.conns[0], 1, SERVER))
    line = json.loads(dec.take_jsonl()[0])
    assert line["l7protocol"] == "grpc"
    g = line["grpc"]
    assert (g["service"], g["method"]) == (grpc_echo.SERVICE, "Unary")
    assert [base64.b64decode(m) for m in g["requestMessages"]] == [b"hello"]
    assert [base64.b64decode(m) for m in g["responseMessages"]] == [b"olleh"]
    assert "status" not in g  # 0 (OK) is the proto3 default


def test_grpc_messages_past_the_body_limit_are_cut_and_flagged() -> None:
    server, port = grpc_echo.serve()
    try:
        with Relay(("127.0.0.1", port)) as relay:
            with grpc.insecure_channel(f"127.0.0.1:{relay.port}") as ch:
                parts = [bytes([i]) * 1000 for i in range(10)]
                ch.stream_unary(f"/{grpc_echo.SERVICE}/ClientStream")(iter(parts), timeout=30)
            relay.wait_closed()
    finally:
        server.stop(0)
    pairs, _ = decode(relay.conns, SERVER, max_body=3500)
    (p,) = pairs
    assert list(p.grpc.request_messages) == parts[:3]
    assert "truncated" in p.flags
    assert p.http.req.body_size == 10 * 1005


needs_nghttp2 = pytest.mark.skipif(
    shutil.which("nghttpd") is None or shutil.which("h2load") is None,
    reason="nghttp2-server / nghttp2-client not installed (scripts/setup.sh installs them)",
)


@pytest.fixture
def nghttpd(tmp_path: Path) -> Iterator[int]:
    with serve_h2c(tmp_path) as port:
        yield port


@needs_nghttp2
@pytest.mark.slow
@pytest.mark.parametrize(("role", "direction"), ROLES)
def test_h2load_1000_requests_on_one_connection(nghttpd: int, role: int, direction: int) -> None:
    """1,000 requests, 100 at once, on one connection: every stream one RRPair, and HPACK's
    dynamic table reused all along (h2load's requests after the first are mostly indexed)."""
    with Relay(("127.0.0.1", nghttpd)) as relay:
        out = subprocess.run(
            [
                "h2load",
                "-n",
                "1000",
                "-c",
                "1",
                "-m",
                "100",
                f"http://127.0.0.1:{relay.port}/index.html",
            ],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        assert "1000 succeeded" in out, out
        relay.wait_closed()
    assert len(relay.conns) == 1
    pairs, counters = decode(relay.conns, role)
    assert len(pairs) == 1000
    assert counters.get("h2_blocks_unknown_entries", 0) == 0
    body = b"<h1>hello</h1>\n" * 10
    for p in pairs:
        assert (p.l7protocol, p.direction, list(p.flags)) == ("http2", direction, [])
        assert (p.http.req.method, p.http.req.url) == ("GET", "/index.html")
        assert p.http.res.status_code == 200
        assert p.http.res.body == body
    # the dynamic table was used: the request blocks are far smaller than their headers
    assert len(relay.conns[0].side("req")) < 1000 * 40


@needs_nghttp2
@pytest.mark.parametrize(("role", "direction"), ROLES)
def test_curl_prior_knowledge(nghttpd: int, role: int, direction: int, tmp_path: Path) -> None:
    with Relay(("127.0.0.1", nghttpd)) as relay:
        base = f"http://127.0.0.1:{relay.port}"
        for i, path in enumerate(("/big.bin", "/index.html", "/missing")):
            subprocess.run(
                [
                    "curl",
                    "-sS",
                    "--http2-prior-knowledge",
                    "-o",
                    str(tmp_path / str(i)),
                    base + path,
                ],
                check=True,
                timeout=60,
            )
        relay.wait_closed()
    assert len(relay.conns) == 3
    pairs, _ = decode(relay.conns, role)
    by_url = {p.http.req.url: p for p in pairs}
    assert set(by_url) == {"/big.bin", "/index.html", "/missing"}
    assert by_url["/big.bin"].http.res.body == (tmp_path / "0").read_bytes()
    assert by_url["/index.html"].http.res.body == (tmp_path / "1").read_bytes()
    assert by_url["/missing"].http.res.status_code == 404
    for p in pairs:
        assert p.direction == direction and p.l7protocol == "http2" and list(p.flags) == []
        hs = [(h.name, h.value) for h in p.http.req.headers]
        assert hs[:4] == [  # in curl's wire order
            (":method", "GET"),
            (":path", p.http.req.url),
            (":scheme", "http"),
            (":authority", f"127.0.0.1:{relay.port}"),
        ]


@needs_nghttp2
def test_capture_started_mid_connection(nghttpd: int) -> None:
    """The capture starts after the first 50 reads of the connection: the decoder finds
    HTTP/2 frames (no preface), decodes what the static table and literals give, and flags
    the header blocks that referenced dynamic-table entries indexed before it started
    (h2load and nghttpd reuse them to the end, so every block stays flagged: the table is
    trusted again only once the peer's newly indexed headers have replaced them all, which
    the core's unit tests show)."""
    with Relay(("127.0.0.1", nghttpd)) as relay:
        subprocess.run(
            [
                "h2load",
                "-n",
                "1000",
                "-c",
                "1",
                "-m",
                "10",
                f"http://127.0.0.1:{relay.port}/index.html",
            ],
            capture_output=True,
            timeout=120,
            check=True,
        )
        relay.wait_closed()
    pairs, counters = decode(relay.conns, SERVER, skip=50)
    assert counters["conns_h2"] == 1 and counters["h2_conns_failed"] == 0
    assert counters["h2_blocks_unknown_entries"] > 0
    complete = [p for p in pairs if "incomplete" not in p.flags]
    assert len(complete) > 500 and len(pairs) - len(complete) <= 10  # h2load's -m 10
    for p in complete:
        assert list(p.flags) == ["hpack_unknown_entry"]
        # :method GET and :status 200 are static entries; the :path is a literal
        assert (p.http.req.method, p.http.req.url) == ("GET", "/index.html")
        assert p.http.res.status_code == 200
        assert p.http.res.body == b"<h1>hello</h1>\n" * 10
