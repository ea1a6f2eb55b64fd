"""Methods, bodies and headers: exact RRPairs from live capture of real servers (nginx, the
Python echo server) driven by real clients (curl, Python http.client, raw sockets), each in a
process of its own.

Every exchange is captured twice, INBOUND in the server process and OUTBOUND in the client
process; both must equal what the client itself sent and read, field by field.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from tests.capture.clients import Request, Response, curl
from tests.capture.exchange_env import (
    BIG,
    MIB,
    TEXT,
    Env,
    assert_no_loss,
    both_sides,
    chunked_body,
    req_bytes,
)
from tests.capture.expect import (
    assert_curl_exchange,
    assert_request,
    assert_response,
    hdrs,
)
from tests.capture.py_clients import py_http
from tests.capture.raw_client import raw_exchange, split_responses

pytestmark = [pytest.mark.bpf, pytest.mark.root]


def test_methods_python_client_nginx(env: Env) -> None:
    """GET, HEAD, POST, PUT, DELETE on one keep-alive connection: HEAD's response has a
    Content-Length and no body, and the exchanges after it still parse."""
    host = f"127.0.0.1:{env.ngx.port}"
    reqs = [
        Request("GET", "/echo?m=get", [("Host", host), ("X-Case", "MiXeD")]),
        Request("HEAD", "/echo?m=head", [("Host", host)]),
        Request(
            "POST",
            "/echo?m=post",
            [("Host", host), ("Content-Type", "text/plain"), ("Content-Length", "11")],
            b"post body\r\n",
        ),
        Request("PUT", "/echo?m=put", [("Host", host), ("Content-Length", "3")], b"put"),
        Request("DELETE", "/echo?m=delete", [("Host", host), ("Accept", "*/*")]),
    ]
    run = py_http("127.0.0.1", env.ngx.port, reqs)
    inb, out = both_sides(env, run.local_port, len(reqs))
    for p_in, p_out, req, res in zip(inb, out, reqs, run.responses, strict=True):
        assert res.status == 200
        for p in (p_in, p_out):
            assert_request(p, req.method, req.url, req.headers, req.body)
            assert_response(p, res)
    assert inb[1].http.res.body == b"" and ("Content-Length", "5") in hdrs(inb[1].http.res)
    assert inb[0].meta.comm == "nginx" and inb[0].meta.pid in env.ngx.worker_pids
    assert out[0].meta.comm.startswith("python")
    assert inb[0].server.ip == inb[0].client.ip == "127.0.0.1"
    assert inb[0].server.port == env.ngx.port
    assert_no_loss(env.lc)


@pytest.mark.parametrize(
    ("method", "opts", "body"),
    [
        ("GET", [], b""),
        ("HEAD", ["-I"], b""),
        ("POST", ["--data-binary", "hello=post"], b"hello=post"),
        ("PUT", ["-X", "PUT", "--data-binary", "put me"], b"put me"),
        ("DELETE", ["-X", "DELETE"], b""),
    ],
)
def test_methods_curl_python_server(env: Env, method: str, opts: list[str], body: bytes) -> None:
    """curl against the Python echo server: the echo body comes back in the response."""
    run = curl(*opts, env.py.url + f"/echo/{method.lower()}?x=1&y=%20")
    (ex,) = run.exchanges
    assert ex.method == method
    (port,) = run.local_ports
    inb, out = both_sides(env, port, 1)
    res_body = b"" if method == "HEAD" else body
    if method != "HEAD":
        assert run.stdout == body
    for p in (inb[0], out[0]):
        assert_curl_exchange(p, ex, body, res_body)
    assert inb[0].meta.pid == env.py.pid
    assert out[0].meta.comm == "curl"
    assert_no_loss(env.lc)


# ---- bodies ----------------------------------------------------------------------------------


def test_one_mib_bodies(env: Env, tmp_path: Path) -> None:
    """1 MiB request and response bodies, byte for byte (sha256), from three clients."""
    path = tmp_path / "big.bin"
    path.write_bytes(BIG)
    # curl POSTs 1 MiB to the echo server, which sends it back
    run = curl(
        "--data-binary",
        f"@{path}",
        "-H",
        "Content-Type: application/octet-stream",
        env.py.url + "/upload",
    )
    (ex,) = run.exchanges
    assert run.stdout == BIG
    inb, out = both_sides(env, run.local_ports[0], 1)
    for p in (inb[0], out[0]):
        assert_curl_exchange(p, ex, BIG, BIG)
    # a Python client GETs 1 MiB from nginx and PUTs 1 MiB to it
    host = f"127.0.0.1:{env.ngx.port}"
    reqs = [
        Request("GET", "/big.bin", [("Host", host)]),
        Request("PUT", "/echo", [("Host", host), ("Content-Length", str(MIB))], BIG),
    ]
    prun = py_http("127.0.0.1", env.ngx.port, reqs)
    assert prun.responses[0].body == BIG
    inb, out = both_sides(env, prun.local_port, 2)
    for p_in, p_out, req, res in zip(inb, out, reqs, prun.responses, strict=True):
        for p in (p_in, p_out):
            assert_request(p, req.method, req.url, req.headers, req.body)
            assert_response(p, res)
    assert inb[0].http.res.body_size == MIB == inb[1].http.req.body_size
    assert_no_loss(env.lc)


def test_chunked_response_with_trailers(env: Env) -> None:
    """The Python server answers /chunked/N with N chunks and a trailer; the RRPair body is
    the decoded body, the trailer is in res.trailers, the headers are the wire's."""
    run = curl(env.py.url + "/chunked/40", env.py.url + "/chunked/1")
    assert len(run.exchanges) == 2 and run.local_ports[0] == run.local_ports[1]
    assert run.stdout == chunked_body(40) + chunked_body(1)
    inb, out = both_sides(env, run.local_ports[0], 2)
    for i, n in enumerate((40, 1)):
        for p in (inb[i], out[i]):
            assert_curl_exchange(p, run.exchanges[i], b"", chunked_body(n))
            assert ("Transfer-Encoding", "chunked") in hdrs(p.http.res)
            assert [(t.name, t.value) for t in p.http.res.trailers] == [("X-Trailer", "done")]
    assert_no_loss(env.lc)


def test_chunked_request(env: Env, tmp_path: Path) -> None:
    """curl sends a chunked request body to nginx; the RRPair holds it decoded."""
    path = tmp_path / "body.bin"
    data = BIG[:300_000]
    path.write_bytes(data)
    run = curl(
        "-H",
        "Transfer-Encoding: chunked",
        "--data-binary",
        f"@{path}",
        env.ngx.url + "/echo?chunked",
    )
    (ex,) = run.exchanges
    assert ("Transfer-Encoding", "chunked") in ex.headers
    inb, out = both_sides(env, run.local_ports[0], 1)
    for p in (inb[0], out[0]):
        assert_curl_exchange(p, ex, data, b"echo\n")
    assert_no_loss(env.lc)


def test_content_coding_kept_close_delimited_and_chunked(env: Env) -> None:
    """gzip from nginx: over HTTP/1.0 the body ends when nginx closes the connection (no
    Content-Length), over HTTP/1.1 it is chunked; either way the RRPair body is the gzip
    bytes as sent, which decompress to the file."""
    host = f"127.0.0.1:{env.ngx.port}"
    headers = [("Host", host), ("Accept-Encoding", "gzip")]
    req = req_bytes("GET", "/gz/text.txt", headers).replace(b"HTTP/1.1", b"HTTP/1.0", 1)
    run = raw_exchange("127.0.0.1", env.ngx.port, req)
    head, _, body = run.received.partition(b"\r\n\r\n")
    lines = head.decode("iso-8859-1").split("\r\n")
    res_headers = [(n, v.strip()) for n, _, v in (line.partition(":") for line in lines[1:])]
    assert ("Content-Encoding", "gzip") in res_headers
    assert not [n for n, _ in res_headers if n in ("Content-Length", "Transfer-Encoding")]
    assert gzip.decompress(body) == TEXT
    inb, out = both_sides(env, run.local_port, 1)
    for p in (inb[0], out[0]):
        assert (p.http.req.method, p.http.req.url, p.http.req.version) == (
            "GET",
            "/gz/text.txt",
            "HTTP/1.0",
        )
        assert hdrs(p.http.req) == headers
        assert_response(p, Response(200, "OK", "HTTP/1.1", res_headers, body))

    crun = curl("-H", "Accept-Encoding: gzip", env.ngx.url + "/gz/text.txt")
    (ex,) = crun.exchanges
    assert ("Transfer-Encoding", "chunked") in ex.final.headers
    assert gzip.decompress(crun.stdout) == TEXT
    inb, out = both_sides(env, crun.local_ports[0], 1)
    for p in (inb[0], out[0]):
        assert_curl_exchange(p, ex, b"", crun.stdout)
    assert_no_loss(env.lc)


@pytest.mark.parametrize("server", ["nginx", "python"])
def test_header_edge_cases(env: Env, server: str) -> None:
    """Headers as on the wire: an empty value, a repeated name, lower case, an underscore,
    leading whitespace (not part of the value), obs-text bytes; an escaped target."""
    port = env.ngx.port if server == "nginx" else env.py.port
    headers = [
        ("Host", "x"),
        ("X-Empty", ""),
        ("X-Dup", "1"),
        ("X-Dup", "2"),
        ("x-lower", "a"),
        ("X_Under", "u"),
        ("X-Lead", "lead"),
        ("X-Obs", "caf\xe9 \xff"),
        ("Content-Length", "3"),
        ("Connection", "close"),
    ]
    wire = (
        b"POST /echo?a=%20b&c=%C3%A9#frag HTTP/1.1\r\nHost: x\r\nX-Empty:\r\nX-Dup: 1\r\n"
        b"X-Dup: 2\r\nx-lower: a\r\nX_Under: u\r\nX-Lead:    lead\r\nX-Obs: caf\xe9 \xff\r\n"
        b"Content-Length: 3\r\nConnection: close\r\n\r\nabc"
    )
    run = raw_exchange("127.0.0.1", port, wire)
    (res,) = split_responses(run.received, ["POST"])
    assert res.status == 200
    inb, out = both_sides(env, run.local_port, 1)
    for p in (inb[0], out[0]):
        assert_request(p, "POST", "/echo?a=%20b&c=%C3%A9#frag", headers, b"abc")
        assert_response(p, res)
    assert_no_loss(env.lc)


def test_large_request_head(env: Env) -> None:
    """A 48 KiB request head (48 headers of 1 KiB) spans several records."""
    host = f"127.0.0.1:{env.py.port}"
    headers = [("Host", host)] + [(f"X-Big-{i}", chr(65 + i % 26) * 1024) for i in range(48)]
    reqs = [
        Request("GET", "/bytes/100", headers),
        Request("POST", "/echo", [*headers, ("Content-Length", "5")], b"after"),
    ]
    run = py_http("127.0.0.1", env.py.port, reqs)
    inb, out = both_sides(env, run.local_port, 2)
    for p_in, p_out, req, res in zip(inb, out, reqs, run.responses, strict=True):
        for p in (p_in, p_out):
            assert_request(p, req.method, req.url, req.headers, req.body)
            assert_response(p, res)
    assert_no_loss(env.lc)


def test_proxy_hop_four_views(env: Env) -> None:
    """curl -> nginx (reverse proxy) -> Python server: nginx is server of one connection and
    client of another. The first hop is seen by curl and nginx, the second by nginx and
    the Python server; each pair of views agrees, and the hops carry the same body."""
    body = BIG[:100_000]
    run = curl("--data-binary", "@-", env.ngx.url + "/proxy/echo/hop?q=1", stdin=body)
    (ex,) = run.exchanges
    assert run.stdout == body
    inb1, out1 = both_sides(env, run.local_ports[0], 1)
    assert_curl_exchange(inb1[0], ex, body, body)
    assert inb1[0].meta.comm == "nginx" and out1[0].meta.comm == "curl"
    # the second hop: nginx's own connection to the Python server
    hop2 = env.lc.wait_for(
        2, where=lambda p: p.server.port == env.py.port and p.id not in env.before
    )
    inb2, out2 = both_sides(env, hop2[0].client.port, 1)
    assert out2[0].meta.comm == "nginx" and out2[0].meta.pid == inb1[0].meta.pid
    assert inb2[0].meta.pid == env.py.pid
    req2, res2 = inb2[0].http.req, inb2[0].http.res
    assert (req2.method, req2.url, req2.version) == ("POST", "/echo/hop?q=1", "HTTP/1.0")
    assert hdrs(req2)[:2] == [("Host", f"127.0.0.1:{env.py.port}"), ("Connection", "close")]
    assert req2.body == body and res2.body == body
    assert res2.status_code == 200 and inb1[0].http.res.status_code == 200
    assert_no_loss(env.lc)
