"""How the bytes travel, live: pipelined requests, sendmsg/recvmsg with iovecs (few, many,
empty), and Expect: 100-continue. Both sides of each exchange must equal what the client sent
and read."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.capture.clients import curl
from tests.capture.exchange_env import (
    BIG,
    Env,
    assert_no_loss,
    both_sides,
    req_bytes,
)
from tests.capture.expect import (
    assert_curl_exchange,
    assert_request,
    assert_response,
    hdrs,
)
from tests.capture.raw_client import RawClient, raw_exchange, split_responses

pytestmark = [pytest.mark.bpf, pytest.mark.root]


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
    data = b"".join(req_bytes(*r) for r in reqs)
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
