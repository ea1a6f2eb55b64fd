"""Exact RRPairs from live capture of real servers (nginx, the Python echo server) driven by
real clients (curl, Python http.client, raw sockets, wrk), each in a process of its own.

Every exchange is captured twice, INBOUND in the server process and OUTBOUND in the client
process; both must equal what the client itself sent and read, field by field.
"""

from __future__ import annotations

import email.utils
import gzip
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from nodetap.v1 import rrpair_pb2 as pb
from tests.capture.clients import (
    Headers,
    PausedClient,
    PyRun,
    RawClient,
    Request,
    Response,
    Step,
    curl,
    py_http,
    py_http_parallel,
    raw_exchange,
    split_responses,
    wrk,
)
from tests.capture.expect import (
    LOSS_COUNTERS,
    assert_agree,
    assert_curl_exchange,
    assert_request,
    assert_response,
    hdrs,
)
from tests.support.capture import LiveCapture, live_capture
from tests.support.servers import Nginx, PyServer, free_port, nginx, python_server_process

pytestmark = [pytest.mark.bpf, pytest.mark.root]

REPO = Path(__file__).resolve().parents[2]

MIB = 1 << 20
_rng = random.Random(2)
BIG = _rng.randbytes(MIB)  # 1 MiB, exactly the default body limit
HUGE = _rng.randbytes(8 * MIB)  # more than loopback socket buffers hold
STATIC = b"a static file\n"
STATIC_MTIME = 1_700_000_000
TEXT = b"".join(b"line %d of a compressible text\n" % i for i in range(3000))
EXTRA = """
        location = /static.txt { }
        location /small { client_max_body_size 1k; return 200 "small\n"; }
        location /gz/ {
            gzip on;
            gzip_http_version 1.0;
            gzip_min_length 0;
            gzip_types *;
        }
"""
PROXY = """
        location /proxy/ {
            proxy_pass http://127.0.0.1:PYPORT/;
        }
"""


# bodies in the Python server's /chunked/N replies
def chunked_body(n: int) -> bytes:
    return b"".join(f"chunk-{i}\n".encode() for i in range(n))


@dataclass
class Env:
    ngx: Nginx
    py: PyServer
    lc: LiveCapture
    # ids of the RRPairs captured before the current test: the kernel reuses client ports
    # across the module's tests, so a port names one connection only within a test
    before: set[str] = field(default_factory=set)


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    """nginx (IPv4 and IPv6; /proxy/ forwards to the Python server) and the Python echo
    server, both captured by one capture that filters on their two ports (other traffic on
    this machine stays out)."""
    files = {"static.txt": STATIC, "big.bin": BIG, "huge.bin": HUGE, "gz/text.txt": TEXT}
    with python_server_process() as py:
        proxy = PROXY.replace("PYPORT", str(py.port))
        with nginx(files=files, ipv6=True, extra=EXTRA + proxy) as ngx:
            os.utime(ngx.root / "www" / "static.txt", (STATIC_MTIME, STATIC_MTIME))
            with live_capture(ports=[ngx.port, py.port]) as lc:
                yield Env(ngx, py, lc)


@pytest.fixture(autouse=True)
def _new_test(request: pytest.FixtureRequest) -> None:
    if "env" in request.fixturenames:
        env: Env = request.getfixturevalue("env")
        env.before = {p.id for p in list(env.lc.pairs)}


# ---- helpers ---------------------------------------------------------------------------------


def assert_no_loss(lc: LiveCapture) -> None:
    s = lc.cap.summary()
    lost = {k: s[k] for k in LOSS_COUNTERS if s[k]}
    assert not lost, f"capture lost data: {lost}"


def both_sides(
    where: Env | LiveCapture, client_port: int, n: int, flags: list[str] | None = None
) -> tuple[list[pb.RRPair], list[pb.RRPair]]:
    """The n exchanges of the connection from `client_port`, as (INBOUND, OUTBOUND) lists in
    request order; checks that both sides agree field by field."""
    lc = where.lc if isinstance(where, Env) else where
    got = lc.wait_for(2 * n, where=of_port(where, client_port))
    inb = [p for p in got if p.direction == pb.INBOUND]
    out = [p for p in got if p.direction == pb.OUTBOUND]
    assert (len(inb), len(out)) == (n, n), [(p.direction, p.http.req.url) for p in got]
    for i, o in zip(inb, out, strict=True):
        assert_agree(i, o, flags or [])
    return inb, out


def assert_echoed_both_sides(env: Env, run: PyRun, reqs: list[Request]) -> None:
    """A Python client's requests to the echo server, each answered with its own body,
    captured exactly on both sides."""
    inb, out = both_sides(env, run.local_port, len(reqs))
    for p_in, p_out, req, res in zip(inb, out, reqs, run.responses, strict=True):
        assert res.body == req.body
        for p in (p_in, p_out):
            assert_request(p, req.method, req.url, req.headers, req.body)
            assert_response(p, res)


def of_port(where: Env | LiveCapture, client_port: int) -> Callable[[pb.RRPair], bool]:
    """RRPairs of the connection from `client_port` (in the shared capture: of this test)."""
    before = where.before if isinstance(where, Env) else set()
    return lambda p: p.client.port == client_port and p.id not in before


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
    req = _req_bytes("GET", "/gz/text.txt", headers).replace(b"HTTP/1.1", b"HTTP/1.0", 1)
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


# ---- connections -----------------------------------------------------------------------------


def test_keepalive_many_requests_one_connection(env: Env) -> None:
    """150 GETs to nginx and 100 POSTs to the Python server, each on one connection."""
    host = f"127.0.0.1:{env.ngx.port}"
    gets = [Request("GET", f"/hello?i={i}", [("Host", host)]) for i in range(150)]
    run = py_http("127.0.0.1", env.ngx.port, gets)
    inb, out = both_sides(env, run.local_port, 150)
    for i, (p_in, p_out) in enumerate(zip(inb, out, strict=True)):
        for p in (p_in, p_out):
            assert_request(p, "GET", f"/hello?i={i}", [("Host", host)], b"")
            assert_response(p, run.responses[i])
            assert p.http.res.body == b"hello world\n"
    assert len({p.meta.conn_id for p in inb}) == 1

    host = f"127.0.0.1:{env.py.port}"
    posts = [
        Request("POST", f"/p/{i}", [("Host", host), ("Content-Length", str(i * 7))], BIG[: i * 7])
        for i in range(100)
    ]
    run = py_http("127.0.0.1", env.py.port, posts)
    assert_echoed_both_sides(env, run, posts)
    assert_no_loss(env.lc)


@pytest.mark.parametrize("server", ["nginx", "python"])
def test_upgrade_refused_then_keep_alive(env: Env, server: str) -> None:
    """A request asks for an Upgrade (h2c) that the server ignores (200): the connection
    stays HTTP/1.1, and the requests after it are captured too."""
    port = env.ngx.port if server == "nginx" else env.py.port
    host = f"127.0.0.1:{port}"
    reqs = [
        Request(
            "GET",
            "/echo?up",
            [
                ("Host", host),
                ("Connection", "Upgrade, HTTP2-Settings"),
                ("Upgrade", "h2c"),
                ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"),
            ],
        ),
        Request("POST", "/echo?after-up", [("Host", host), ("Content-Length", "4")], b"more"),
        Request("GET", "/echo?last", [("Host", host)]),
    ]
    run = py_http("127.0.0.1", port, reqs)
    assert [r.status for r in run.responses] == [200, 200, 200]
    inb, out = both_sides(env, run.local_port, len(reqs))
    for p_in, p_out, req, res in zip(inb, out, reqs, run.responses, strict=True):
        for p in (p_in, p_out):
            assert_request(p, req.method, req.url, req.headers, req.body)
            assert_response(p, res)
    assert_no_loss(env.lc)
    assert env.lc.cap.summary()["conns_upgraded"] == 0


def test_new_connection_per_request_fd_reuse(env: Env) -> None:
    """curl opens a new connection for each of 20 URLs ("Connection: close"): the client
    and nginx reuse the same fd numbers, and no exchange mixes two connections."""
    urls = [env.ngx.url + f"/hello?conn={i}" for i in range(20)]
    run = curl("-H", "Connection: close", *urls)
    assert len(set(run.local_ports)) == 20
    for i, (port, ex) in enumerate(zip(run.local_ports, run.exchanges, strict=True)):
        inb, out = both_sides(env, port, 1)
        for p in (inb[0], out[0]):
            assert_curl_exchange(p, ex, b"", b"hello world\n")
            assert p.http.req.url == f"/hello?conn={i}"
    ids = {
        p.meta.conn_id
        for p in env.lc.pairs
        if p.client.port in run.local_ports and p.id not in env.before
    }
    assert len(ids) == 40  # one connection id per connection and side
    assert_no_loss(env.lc)


def test_parallel_connections_of_one_client_process(env: Env) -> None:
    """20 threads of one client process, each on its own connection, POST to the threaded
    Python server at the same time: every exchange lands on its own connection, exact."""
    host = f"127.0.0.1:{env.py.port}"
    conns = [
        [
            Request(
                "POST",
                f"/par/{c}/{i}",
                [("Host", host), ("Content-Length", str(len(body)))],
                body,
            )
            for i in range(10)
            for body in [f"{c}:{i};".encode() * (1 + (c * i) % 300)]
        ]
        for c in range(20)
    ]
    runs = py_http_parallel("127.0.0.1", env.py.port, conns)
    assert len({r.local_port for r in runs}) == 20
    for reqs, run in zip(conns, runs, strict=True):
        assert_echoed_both_sides(env, run, reqs)
    assert_no_loss(env.lc)


@pytest.mark.parametrize("server", ["nginx", "python"])
def test_request_sent_one_byte_at_a_time(env: Env, server: str) -> None:
    """A request written in 1-byte writes (one record each), then a normal one."""
    port = env.ngx.port if server == "nginx" else env.py.port
    host = f"127.0.0.1:{port}"
    slow = _req_bytes("POST", "/echo?slow", [("Host", host), ("Content-Length", "5")], b"tiny!")
    last = _req_bytes("GET", "/echo?last", [("Host", host), ("Connection", "close")])
    steps: list[Step] = [("send", slow[i : i + 1]) for i in range(len(slow))]
    steps += [("send", last), ("read", None)]
    with RawClient("127.0.0.1", port, steps) as client:
        run = client.resume()
    responses = split_responses(run.received, ["POST", "GET"])
    inb, out = both_sides(env, run.local_port, 2)
    expected = [
        ("POST", "/echo?slow", [("Host", host), ("Content-Length", "5")], b"tiny!"),
        ("GET", "/echo?last", [("Host", host), ("Connection", "close")], b""),
    ]
    for p_in, p_out, req, res in zip(inb, out, expected, responses, strict=True):
        for p in (p_in, p_out):
            assert_request(p, *req)
            assert_response(p, res)
    assert_no_loss(env.lc)


def _req_bytes(method: str, url: str, headers: Headers, body: bytes = b"") -> bytes:
    head = f"{method} {url} HTTP/1.1\r\n" + "".join(f"{n}: {v}\r\n" for n, v in headers)
    return head.encode() + b"\r\n" + body


@pytest.mark.parametrize("server", ["nginx", "python"])
def test_pipelining(env: Env, server: str) -> None:
    """A raw socket client writes five requests at once, then reads the five responses."""
    port = env.ngx.port if server == "nginx" else env.py.port
    host = f"127.0.0.1:{port}"
    reqs = [
        ("GET", "/hello?pipe=0" if server == "nginx" else "/bytes/3000", [("Host", host)], b""),
        ("HEAD", "/static.txt" if server == "nginx" else "/bytes/10", [("Host", host)], b""),
        ("POST", "/echo", [("Host", host), ("Content-Length", "9")], b"pipelined"),
        ("GET", "/status/204", [("Host", host)], b""),
        (
            "GET",
            "/hello?pipe=4" if server == "nginx" else "/bytes/7",
            [("Host", host), ("Connection", "close")],
            b"",
        ),
    ]
    data = b"".join(_req_bytes(*r) for r in reqs)
    run = raw_exchange("127.0.0.1", port, data)
    responses = split_responses(run.received, [r[0] for r in reqs])
    assert [r.status for r in responses] == [200, 200, 200, 204, 200]
    inb, out = both_sides(env, run.local_port, len(reqs))
    for p_in, p_out, req, res in zip(inb, out, reqs, responses, strict=True):
        for p in (p_in, p_out):
            assert_request(p, *req)
            assert_response(p, res)
    assert_no_loss(env.lc)


@pytest.mark.parametrize("server", ["nginx", "python"])
def test_sendmsg_and_recvmsg_iovecs(env: Env, server: str) -> None:
    """A client writes three requests with one sendmsg() of many iovecs (one per header
    line, body pieces apart) and reads with recvmsg() into three buffers."""
    port = env.ngx.port if server == "nginx" else env.py.port
    host = f"127.0.0.1:{port}"
    reqs = [
        ("POST", "/echo?iov=0", [("Host", host), ("Content-Length", "20")], BIG[:20]),
        ("GET", "/status/204", [("Host", host)], b""),
        (
            "PUT",
            "/echo?iov=2",
            [("Host", host), ("Connection", "close"), ("Content-Length", "5000")],
            BIG[:5000],
        ),
    ]
    iovecs: list[bytes] = []
    for method, url, headers, body in reqs:
        iovecs.append(f"{method} {url} HTTP/1.1\r\n".encode())
        iovecs += [f"{n}: {v}\r\n".encode() for n, v in headers]
        iovecs.append(b"\r\n")
        iovecs += [body[k : k + 1000] for k in range(0, len(body), 1000)]
    with RawClient("127.0.0.1", port, [("sendmsg", iovecs), ("readmsg", None)]) as client:
        run = client.resume()
    responses = split_responses(run.received, [r[0] for r in reqs])
    assert [r.status for r in responses] == [200, 204, 200]
    inb, out = both_sides(env, run.local_port, len(reqs))
    for p_in, p_out, req, res in zip(inb, out, reqs, responses, strict=True):
        for p in (p_in, p_out):
            assert_request(p, *req)
            assert_response(p, res)
    assert_no_loss(env.lc)


@pytest.mark.parametrize("server", ["nginx", "python"])
def test_expect_100_continue(env: Env, server: str, tmp_path: Path) -> None:
    """curl waits for "100 Continue" before the body: the interim response is no exchange of
    its own, and the final response pairs with the request."""
    path = tmp_path / "body.bin"
    data = BIG[:200_000]
    path.write_bytes(data)
    url = (env.ngx.url if server == "nginx" else env.py.url) + "/echo?expect"
    run = curl(
        "-H",
        "Expect: 100-continue",
        "--expect100-timeout",
        "20",
        "--data-binary",
        f"@{path}",
        url,
        url + "&again",
    )
    assert len(run.exchanges) == 2
    for ex in run.exchanges:
        assert ("Expect", "100-continue") in ex.headers
        assert [r.status for r in ex.responses] == [100, 200], "server sent no 100 Continue"
    inb, out = both_sides(env, run.local_ports[0], 2)
    res_body = b"echo\n" if server == "nginx" else data
    for i in range(2):
        for p in (inb[i], out[i]):
            assert_curl_exchange(p, run.exchanges[i], data, res_body)
    assert not [p for p in env.lc.pairs if p.http.res.status_code == 100]
    assert_no_loss(env.lc)


def test_expect_100_rejected(env: Env, tmp_path: Path) -> None:
    """nginx answers "Expect: 100-continue" for a body over its limit with 413 and closes:
    curl never sends the body. The request pairs with the 413, flagged "incomplete" (its
    declared body never came); the next connection is captured whole."""
    path = tmp_path / "body.bin"
    path.write_bytes(BIG[:200_000])
    run = curl(
        "-H",
        "Expect: 100-continue",
        "--data-binary",
        f"@{path}",
        env.ngx.url + "/small",
        env.ngx.url + "/hello?after-413",
    )
    first, second = run.exchanges
    assert [r.status for r in first.responses] == [413]
    assert [r.status for r in second.responses] == [100, 200]
    inb, out = both_sides(env, run.local_ports[0], 1, flags=["incomplete"])
    for p in (inb[0], out[0]):
        req, res = p.http.req, p.http.res
        assert (req.method, req.url) == ("POST", "/small")
        assert hdrs(req) == first.headers and req.body_size == 0
        assert (res.status_code, hdrs(res)) == (413, first.final.headers)
    assert run.local_ports[1] != run.local_ports[0]
    inb, out = both_sides(env, run.local_ports[1], 1)
    for p in (inb[0], out[0]):
        assert_curl_exchange(p, second, BIG[:200_000], b"hello world\n")
    assert_no_loss(env.lc)


def test_204_and_304(env: Env) -> None:
    """Bodyless answers (204; 304 to If-Modified-Since) with keep-alive requests after them."""
    since = email.utils.formatdate(STATIC_MTIME, usegmt=True)
    run = curl(
        env.ngx.url + "/status/204",
        "-H",
        f"If-Modified-Since: {since}",
        env.ngx.url + "/static.txt",
        env.ngx.url + "/hello?after",
    )
    assert [ex.final.status for ex in run.exchanges] == [204, 304, 200]
    assert ("Last-Modified", since) in run.exchanges[1].final.headers
    inb, out = both_sides(env, run.local_ports[0], 3)
    for i, res_body in enumerate((b"", b"", b"hello world\n")):
        for p in (inb[i], out[i]):
            assert_curl_exchange(p, run.exchanges[i], b"", res_body)

    host = f"127.0.0.1:{env.py.port}"
    reqs = [
        Request("GET", "/status/204", [("Host", host)]),
        Request("GET", "/status/304", [("Host", host), ("If-None-Match", '"x"')]),
        Request("GET", "/bytes/5", [("Host", host)]),
    ]
    prun = py_http("127.0.0.1", env.py.port, reqs)
    assert [r.status for r in prun.responses] == [204, 304, 200]
    inb, out = both_sides(env, prun.local_port, 3)
    for p_in, p_out, req, res in zip(inb, out, reqs, prun.responses, strict=True):
        for p in (p_in, p_out):
            assert_request(p, req.method, req.url, req.headers, req.body)
            assert_response(p, res)
    assert_no_loss(env.lc)


def test_client_closes_mid_response(env: Env) -> None:
    """A client reads 3 MiB of an 8 MiB response and closes. Each side counts exactly the
    body bytes it moved (the client's read, nginx's logged $body_bytes_sent), keeps the
    first 1 MiB (the default body limit), and flags "incomplete" and "truncated"."""
    host = f"127.0.0.1:{env.ngx.port}"
    url = f"/huge.bin?cut={random.getrandbits(32)}"
    req = _req_bytes("GET", url, [("Host", host)])
    run = raw_exchange("127.0.0.1", env.ngx.port, req, read_limit=3 * MIB)
    head, _, got_body = run.received.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and HUGE.startswith(got_body)
    pairs = env.lc.wait_for(2, where=of_port(env, run.local_port))
    inb = [p for p in pairs if p.direction == pb.INBOUND]
    out = [p for p in pairs if p.direction == pb.OUTBOUND]
    assert len(inb) == len(out) == 1
    sent = _logged_body_bytes(env.ngx, url)
    assert len(got_body) <= sent < len(HUGE)
    for p, size in ((inb[0], sent), (out[0], len(got_body))):
        assert_request(p, "GET", url, [("Host", host)], b"")
        res = p.http.res
        assert res.status_code == 200
        assert ("Content-Length", str(len(HUGE))) in hdrs(res)
        assert res.body_size == size
        assert res.body == HUGE[:MIB]
        assert list(p.flags) == ["incomplete", "truncated"]
    assert hdrs(inb[0].http.res) == hdrs(out[0].http.res)
    assert_no_loss(env.lc)


def _logged_body_bytes(ngx: Nginx, url: str) -> int:
    """$body_bytes_sent of the request for `url` in nginx's access log (combined format)."""
    needle = f'"GET {url} HTTP/1.1" '
    for _ in range(200):
        for line in ngx.access_log_lines():
            if needle in line:
                return int(line.split(needle, 1)[1].split()[1])
        time.sleep(0.05)
    raise AssertionError(f"no access log line for {url}")


def test_ipv6(env: Env) -> None:
    """The same exchanges over ::1."""
    host = f"[::1]:{env.ngx.port}"
    reqs = [
        Request("GET", "/hello?v6", [("Host", host)]),
        Request("POST", "/echo?v6", [("Host", host), ("Content-Length", "4")], b"six!"),
    ]
    run = py_http("::1", env.ngx.port, reqs)
    inb, out = both_sides(env, run.local_port, 2)
    for p_in, p_out, req, res in zip(inb, out, reqs, run.responses, strict=True):
        for p in (p_in, p_out):
            assert_request(p, req.method, req.url, req.headers, req.body)
            assert_response(p, res)
            assert p.client.ip == p.server.ip == "::1"
            assert p.server.port == env.ngx.port
    # curl over IPv6 too
    crun = curl(f"http://[::1]:{env.ngx.port}/hello?curl6")
    inb, out = both_sides(env, crun.local_ports[0], 1)
    assert_curl_exchange(inb[0], crun.exchanges[0], b"", b"hello world\n")
    assert inb[0].client.ip == "::1"
    assert_no_loss(env.lc)


def test_other_ports_stay_out(env: Env) -> None:
    """Traffic to a server on a port outside the capture's filter yields nothing, while
    traffic to a filtered port right after it does."""
    with nginx() as other:
        quiet = curl(other.url + "/hello?other", other.url + "/hello?other2")
        assert quiet.stdout == b"hello world\n" * 2
        run = curl(env.ngx.url + "/hello?mine")
        both_sides(env, run.local_ports[0], 1)
        env.lc.settle()
    new = [p for p in env.lc.pairs if p.id not in env.before]
    assert not [p for p in new if other.port in (p.server.port, p.client.port)]
    assert not [p for p in new if p.client.port in quiet.local_ports]


# ---- own captures ----------------------------------------------------------------------------


def test_connection_opened_before_capture() -> None:
    """A keep-alive connection opened (and used) before the capture started: the requests
    sent on it afterwards are captured on both sides, flagged "preexisting"."""
    with nginx() as ngx:
        host = f"127.0.0.1:{ngx.port}"
        before = [Request("GET", "/hello?before", [("Host", host)])]
        after = [Request("GET", f"/hello?after={i}", [("Host", host)]) for i in range(3)] + [
            Request("POST", "/echo?after", [("Host", host), ("Content-Length", "2")], b"hi")
        ]
        with (
            PausedClient("127.0.0.1", ngx.port, before, after) as client,
            live_capture(ports=[ngx.port]) as lc,
        ):
            responses = client.resume()
            inb, out = both_sides(lc, client.local_port, len(after), flags=["preexisting"])
            lc.settle()
            assert len(lc.pairs) == 2 * len(after)  # nothing from before the start
            for p_in, p_out, req, res in zip(inb, out, after, responses[1:], strict=True):
                for p in (p_in, p_out):
                    assert_request(p, req.method, req.url, req.headers, req.body)
                    assert_response(p, res)
            assert inb[0].meta.comm == "nginx"
            assert lc.cap.summary()["conns_preexisting"] >= 2
            assert_no_loss(lc)


def test_connection_preexisting_mid_response() -> None:
    """The capture starts while a 2 MiB response is half read: the rest of its body is
    skipped (no message start in it), the next exchange on the connection is captured on
    both sides, flagged "preexisting". (A preexisting stream with no message start in its
    first MiB is given up as not HTTP: RESYNC_FAIL_BYTES in the parser.)"""
    data = BIG + BIG[::-1]
    with nginx(files={"two.bin": data}) as ngx:
        host = f"127.0.0.1:{ngx.port}"
        first = _req_bytes("GET", "/two.bin", [("Host", host)])
        after_headers = [("Host", host), ("Connection", "close")]
        after = _req_bytes("GET", "/hello?after", after_headers)
        steps: list[Step] = [
            ("send", first),
            ("read", 3 * MIB // 2),
            ("pause", None),
            ("read", 2 * MIB + 100),
            ("send", after),
            ("read", None),
        ]
        with (
            RawClient("127.0.0.1", ngx.port, steps) as client,
            live_capture(ports=[ngx.port]) as lc,
        ):
            run = client.resume()
            inb, out = both_sides(lc, client.local_port, 1, flags=["preexisting"])
            lc.settle()
            assert len(lc.pairs) == 2
            assert_no_loss(lc)
    _head, _, rest = run.received.partition(b"\r\n\r\n")
    assert rest.startswith(data)
    (res,) = split_responses(rest[len(data) :], ["GET"])
    for p in (inb[0], out[0]):
        assert_request(p, "GET", "/hello?after", after_headers, b"")
        assert_response(p, res)
    assert res.body == b"hello world\n"


SELF_CLIENT = """
import http.client, http.server, json, sys, threading
from tests.support.servers import _EchoHandler
srv = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), _EchoHandler)
threading.Thread(target=srv.serve_forever, daemon=True).start()
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=30)
bodies = []
for i in range(3):
    c.request("POST", f"/self/{i}", body=b"x" * i)
    bodies.append(c.getresponse().read().decode())
print(json.dumps({"port": c.sock.getsockname()[1], "bodies": bodies}))
"""


def test_client_and_server_in_one_process() -> None:
    """A process that serves and calls itself: its accepted fd gives INBOUND RRPairs, its
    connected fd OUTBOUND ones, with the same pid, and they agree."""
    port = free_port()
    with live_capture(ports=[port]) as lc:
        proc = subprocess.run(
            [sys.executable, "-c", SELF_CLIENT, str(port)],
            cwd=REPO,
            capture_output=True,
            check=True,
            timeout=60,
        )
        res = json.loads(proc.stdout)
        assert res["bodies"] == ["", "x", "xx"]
        inb, out = both_sides(lc, res["port"], 3)
    for i, (p_in, p_out) in enumerate(zip(inb, out, strict=True)):
        assert p_in.meta.pid == p_out.meta.pid
        assert p_in.http.req.url == f"/self/{i}" and p_in.http.res.body == b"x" * i


UPGRADE_SERVER = r"""
import socket, sys
ls = socket.create_server(("127.0.0.1", int(sys.argv[1])))
print("ready", flush=True)
c, _ = ls.accept()
head = b""
while b"\r\n\r\n" not in head:
    head += c.recv(4096)
c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: nt-echo\r\n\r\n")
while True:  # the new protocol: echo bytes back
    data = c.recv(65536)
    if not data:
        break
    c.sendall(data)
"""


def test_upgrade_accepted_stops_parsing() -> None:
    """101 Switching Protocols: the exchange is captured with flag "upgrade"; the bytes of
    the new protocol after it are neither parsed as HTTP nor counted as errors."""
    port = free_port()
    # the server starts after the capture: an accept() already blocked when the capture
    # starts yields a connection whose addresses come from /proc, too late for one this short
    with live_capture(ports=[port]) as lc:
        server = subprocess.Popen(
            [sys.executable, "-c", UPGRADE_SERVER, str(port)], stdout=subprocess.PIPE
        )
        try:
            assert server.stdout is not None
            assert server.stdout.readline() == b"ready\n"
            head = _req_bytes(
                "GET", "/ws", [("Host", "x"), ("Connection", "Upgrade"), ("Upgrade", "nt-echo")]
            )
            frames = b"\x81\x05hello not http\r\n\r\n" * 50
            steps: list[Step] = [
                ("send", head),
                ("read", 75),  # the 101 response
                ("send", frames),
                ("read", 75 + len(frames)),
            ]
            with RawClient("127.0.0.1", port, steps) as client:
                run = client.resume()
            assert run.received.startswith(b"HTTP/1.1 101 ") and run.received.endswith(frames)
            inb, _ = both_sides(lc, run.local_port, 1, flags=["upgrade"])
            lc.settle()
            summary = lc.cap.summary()
        finally:
            server.kill()
            server.wait()
    res = inb[0].http.res
    assert (res.status_code, res.status_message) == (101, "Switching Protocols")
    assert hdrs(res) == [("Connection", "Upgrade"), ("Upgrade", "nt-echo")]
    assert inb[0].http.req.url == "/ws"
    assert len(lc.pairs) == 2
    assert summary["conns_upgraded"] == 2 and summary["conns_not_http"] == 0


NOADDR_SERVER = r"""
import ctypes, socket, sys
libc = ctypes.CDLL("libc.so.6", use_errno=True)
ls = socket.create_server(("127.0.0.1", int(sys.argv[1])))
print("ready", flush=True)
for _ in range(int(sys.argv[2])):
    c = socket.socket(fileno=libc.accept(ls.fileno(), None, None))  # as libuv (Node.js) does
    c.recv(100)
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
    c.close()
"""


def test_server_accepting_without_sockaddr() -> None:
    """A server that accepts with a NULL sockaddr (libuv, so every Node.js server) and
    answers short connections: each exchange is captured on both sides."""
    port, n = free_port(), 10
    with live_capture(ports=[port]) as lc:
        server = subprocess.Popen(
            [sys.executable, "-c", NOADDR_SERVER, str(port), str(n)], stdout=subprocess.PIPE
        )
        try:
            assert server.stdout is not None
            assert server.stdout.readline() == b"ready\n"
            ports = [
                raw_exchange(
                    "127.0.0.1", port, _req_bytes("GET", f"/na/{i}", [("Host", "x")])
                ).local_port
                for i in range(n)
            ]
            server.wait(timeout=30)
        finally:
            if server.poll() is None:
                server.kill()
                server.wait()
        lc.wait_for(n, where=lambda p: p.direction == pb.OUTBOUND)
        lc.settle()
        inbound = {p.client.port: p for p in lc.inbound()}
        assert len(inbound) == n, lc.cap.summary()
        for i, client_port in enumerate(ports):
            (p_in,), _ = both_sides(lc, client_port, 1)
            assert p_in.http.req.url == f"/na/{i}" and p_in.http.res.body == b"ok"


def _complete_outbound(p: pb.RRPair) -> bool:
    return p.direction == pb.OUTBOUND and "incomplete" not in p.flags


def test_fifty_concurrent_connections_wrk() -> None:
    """wrk on 50 connections: one INBOUND RRPair per line of nginx's access log, and one
    complete OUTBOUND RRPair per response wrk counted."""
    with nginx() as ngx, live_capture(ports=[ngx.port]) as lc:
        # 50 connections, each pausing 20 ms before each request: at most ~5000
        # requests, whose records fit the ring buffer even if the agent drained nothing
        # until the end (this machine's 2 cores are shared with wrk and nginx)
        result = wrk(ngx.url + "/hello?wrk", connections=50, duration_s=2, delay_ms=20)
        # wait for as many RRPairs as there should be (fails on timeout), then for quiet
        lc.wait_for(result.requests, timeout=60, where=_complete_outbound)
        lc.wait_for(
            len(ngx.access_log_lines()), timeout=60, where=lambda p: p.direction == pb.INBOUND
        )
        lc.settle(quiet=0.5)
        log_lines = ngx.access_log_lines()
        summary = lc.cap.summary()
    inb = [p for p in lc.pairs if p.direction == pb.INBOUND]
    out = [p for p in lc.pairs if p.direction == pb.OUTBOUND]
    assert result.requests > 0
    assert len(inb) == len(log_lines), summary
    out_complete = [p for p in out if _complete_outbound(p)]
    assert len(out_complete) == result.requests, summary
    assert len({p.client.port for p in inb}) == 50
    for p in inb + out_complete:
        assert p.http.req.method == "GET" and p.http.req.url == "/hello?wrk"
        assert p.http.res.status_code == 200 and p.http.res.body == b"hello world\n"
    assert {p.meta.comm for p in out} == {"wrk"}
    lost = {k: summary[k] for k in LOSS_COUNTERS if summary[k]}
    assert not lost


@pytest.mark.parametrize("layout", ["few", "more-than-eight", "empty-iovecs"])
def test_small_sendmsg_iovecs(env: Env, layout: str) -> None:
    """A small sendmsg() (up to 4 KiB in its first 8 iovecs) is copied into one record in
    the kernel; more iovecs take the iovec-per-tail-call path. Both give the same bytes."""
    port = env.py.port
    host = f"127.0.0.1:{port}"
    req = (
        "POST",
        "/echo?small=" + layout,
        [("Host", host), ("Connection", "close"), ("Content-Length", "11")],
        b"hello world",
    )
    head = [f"{req[0]} {req[1]} HTTP/1.1\r\n".encode()] + [
        f"{n}: {v}\r\n".encode() for n, v in req[2]
    ]
    iovecs = {
        "few": [*head, b"\r\n", req[3]],
        "more-than-eight": [*head, b"\r\n"] + [bytes([c]) for c in req[3]],
        "empty-iovecs": [b"", *head, b"", b"\r\n", b"", req[3]],
    }[layout]
    with RawClient("127.0.0.1", port, [("sendmsg", iovecs), ("read", None)]) as client:
        run = client.resume()
    (res,) = split_responses(run.received, [req[0]])
    inb, out = both_sides(env, run.local_port, 1)
    for p in (inb[0], out[0]):
        assert_request(p, *req)
        assert_response(p, res)
    assert_no_loss(env.lc)
