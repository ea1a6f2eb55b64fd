"""Connections, live: keep-alive, refused upgrades, fd reuse, parallel connections, requests
cut into single bytes, 204/304, a client that leaves mid-response, IPv6, and ports that are not
captured. Both sides of each exchange must equal what the client sent and read."""

from __future__ import annotations

import email.utils
import random
import time

import pytest

from nodetap.v1 import rrpair_pb2 as pb
from tests.capture.clients import Request, curl
from tests.capture.exchange_env import (
    BIG,
    HUGE,
    MIB,
    STATIC_MTIME,
    Env,
    assert_echoed_both_sides,
    assert_no_loss,
    both_sides,
    of_port,
    req_bytes,
)
from tests.capture.expect import (
    assert_curl_exchange,
    assert_request,
    assert_response,
    hdrs,
)
from tests.capture.py_clients import py_http, py_http_parallel
from tests.capture.raw_client import RawClient, Step, raw_exchange, split_responses
from tests.support.servers import Nginx, nginx

pytestmark = [pytest.mark.bpf, pytest.mark.root]


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
    slow = req_bytes("POST", "/echo?slow", [("Host", host), ("Content-Length", "5")], b"tiny!")
    last = req_bytes("GET", "/echo?last", [("Host", host), ("Connection", "close")])
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
    req = req_bytes("GET", url, [("Host", host)])
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
