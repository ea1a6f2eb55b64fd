"""Issue 18: a hole costs only the bytes it covers, against real servers and clients.

Each test captures both sides (INBOUND on the server process, OUTBOUND on the client
process) and compares every exchange with what the server logged and the client saw:
method, URL, status, body sizes. The RRPairs are read after the capture closed.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from nodetap.v1 import rrpair_pb2 as pb
from tests.support.capture import LiveCapture, live_capture
from tests.support.peers.gunicorn_server import gunicorn
from tests.support.peers.jdk import jdk_client, jdk_server
from tests.support.servers import nginx

pytestmark = [pytest.mark.bpf, pytest.mark.root, pytest.mark.slow]

BIG = 2 << 20  # one write larger than the per-syscall copy limit (1,179,648 bytes today)
UPLOAD = 1536 << 10
# what a hole may leave on the exchange it hit: "gap" (bytes lost), "truncated" (past
# --max-body); never "incomplete" (the connection did not end early)
LOSSY = {"gap", "truncated"}


def side(lc: LiveCapture, direction: int) -> list[pb.RRPair]:
    return sorted(
        (p for p in lc.pairs if p.direction == direction), key=lambda p: p.ts.ToNanoseconds()
    )


def row(p: pb.RRPair) -> tuple[str, str, int, int, int]:
    h = p.http
    return (h.req.method, h.req.url, h.res.status_code, h.req.body_size, h.res.body_size)


def run_client(code: str) -> list[str]:
    """A Python client in its own process (the capture never traces itself); its stdout."""
    out = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return out.stdout.split()


REQUESTS_CLIENT = """
    import sys, requests
    url, big, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    with requests.Session() as s:
        for r in (s.get(f"{url}/big/{big}"), s.get(f"{url}/small/b"),
                  s.post(f"{url}/upload", data=b"u" * n), s.get(f"{url}/small/after")):
            print(r.status_code, len(r.content))
"""
HTTPX_CLIENT = (
    REQUESTS_CLIENT.replace("import sys, requests", "import sys, httpx")
    .replace("requests.Session()", "httpx.Client()")
    .replace("data=b", "content=b")
)


@pytest.mark.parametrize("client", ["requests", "httpx"])
def test_gunicorn_flask_large_single_writes_then_follow_ups(client: str) -> None:
    """gunicorn's threaded workers keep the connection alive (its sync workers close it after
    each response, so no follow-up could share a connection with the hole): a 2 MiB answer
    in one sendall(), a 1.5 MiB upload in one send(), and the follow-ups behind them."""
    code = REQUESTS_CLIENT if client == "requests" else HTTPX_CLIENT
    with gunicorn(workers=2, worker_class="gthread") as srv:
        with live_capture(ports=[srv.port]) as lc:
            seen = run_client(
                code.replace(
                    "sys.argv[1], int(sys.argv[2]), int(sys.argv[3])",
                    f"{srv.url!r}, {BIG}, {UPLOAD}",
                )
            )
        log = srv.access_log()
    want = [
        ("GET", f"/big/{BIG}", 200, 0, BIG),
        ("GET", "/small/b", 200, 0, len("small b")),
        ("POST", "/upload", 200, UPLOAD, len(f"got {UPLOAD}")),
        ("GET", "/small/after", 200, 0, len("small after")),
    ]
    # the server's log and the client's view agree with what we expect
    assert [(m, p, s, clen, size) for m, p, s, size, clen in log] == want
    assert [int(x) for x in seen] == [v for w in want for v in (w[2], w[4])]
    for direction in (pb.INBOUND, pb.OUTBOUND):
        pairs = side(lc, direction)
        assert [row(p) for p in pairs] == want, pb.Direction.Name(direction)
        big, rest = pairs[0], pairs[1:]
        assert set(big.flags) <= LOSSY and "truncated" in big.flags
        assert big.http.res.body == bytes(i % 251 for i in range(1 << 20))[: len(big.http.res.body)]
        for p in rest:  # nothing after the hole is lost or flagged...
            assert set(p.flags) <= ({"truncated", "gap"} if p.http.req.url == "/upload" else set())
        # ...but a hole in the upload (one send() of 1.5 MiB) is flagged on the upload only
        up = rest[1]
        assert up.http.req.body_size == UPLOAD and up.http.res.body == f"got {UPLOAD}".encode()
    s = lc.cap.summary()
    assert s["rrpairs_incomplete"] == 0


def test_jdk_client_h2c_upgrade_asked_and_refused_then_1_mib_posts() -> None:
    """The JDK's HttpClient asks for h2c on every request; HttpServer never switches. A
    1 MiB POST, another answered after 64 KiB of its body (the answer refuses the upgrade
    before the request ends), then a GET: all stored whole, on both sides."""
    n = 1 << 20
    with jdk_server() as srv:
        with live_capture(ports=[srv.port], max_body=n) as lc:
            seen = jdk_client(srv.url, n)
        log = srv.requests()
    assert log == [
        ("GET", "/first", 0, 16),
        ("POST", "/upload", n, 23),
        ("POST", "/early", n, 5),
        ("GET", "/after", 0, 16),
    ]
    assert seen == [
        (200, "got 0 for /first"),
        (200, f"got {n} for /upload"),
        (200, "early"),
        (200, "got 0 for /after"),
    ]
    for direction in (pb.INBOUND, pb.OUTBOUND):
        pairs = side(lc, direction)
        name = pb.Direction.Name(direction)
        assert [row(p) for p in pairs] == [
            ("GET", "/first", 200, 0, 16),
            ("POST", "/upload", 200, n, 23),
            ("POST", "/early", 200, n, 5),
            ("GET", "/after", 200, 0, 16),
        ], name
        assert all(not p.flags for p in pairs), name
        assert all(
            any(h.name.lower() == "upgrade" and h.value == "h2c" for h in p.http.req.headers)
            for p in pairs
        ), name  # the JDK asked every time; HttpServer never switched
        assert pairs[1].http.req.body == b"p" * n, name  # stored whole
        assert pairs[2].http.req.body == b"p" * n, name
        assert pairs[3].http.res.body == b"got 0 for /after", name


NGINX_HEADERS = "large_client_header_buffers 64 16k;"
HEADERS_CLIENT = """
    import http.client, sys
    c = http.client.HTTPConnection("127.0.0.1", PORT)
    c.putrequest("GET", "/big-head.txt")
    for i in range(100):
        c.putheader(f"X-Filler-{i}", "v" * 1000)
    c.endheaders()
    r = c.getresponse(); print(r.status, len(r.read()))
    c.request("GET", "/after.txt")
    r = c.getresponse(); print(r.status, len(r.read()))
"""


def test_nginx_request_with_100_kib_of_headers_then_a_normal_one() -> None:
    files = {"big-head.txt": b"head ok\n", "after.txt": b"after ok\n"}
    with nginx(files=files, extra=NGINX_HEADERS) as srv:
        with live_capture(ports=[srv.port]) as lc:
            seen = run_client(HEADERS_CLIENT.replace("PORT", str(srv.port)))
        log = srv.access_log_lines()
    assert seen == ["200", "8", "200", "9"]
    assert [line.split('"')[1] for line in log] == [
        "GET /big-head.txt HTTP/1.1",
        "GET /after.txt HTTP/1.1",
    ]
    for direction in (pb.INBOUND, pb.OUTBOUND):
        pairs = side(lc, direction)
        name = pb.Direction.Name(direction)
        assert [row(p) for p in pairs] == [
            ("GET", "/big-head.txt", 200, 0, 8),
            ("GET", "/after.txt", 200, 0, 9),
        ], name
        assert all(not p.flags for p in pairs), name
        fillers = [h for h in pairs[0].http.req.headers if h.name.startswith("X-Filler-")]
        assert len(fillers) == 100 and all(h.value == "v" * 1000 for h in fillers), name
    assert lc.cap.summary()["conns_not_http"] == 0
