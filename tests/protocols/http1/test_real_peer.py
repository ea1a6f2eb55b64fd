"""Real peers: Python's http.client / curl talking to http.server through a recording relay.

The relay records the bytes as its sockets saw them (both directions, in order); the stitcher
must turn them into exactly what the client sent and received.
"""

from __future__ import annotations

import http.client
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from agent.protocols.http1 import Http1Stitcher
from agent.protocols.http1.types import HttpExchange
from tests.protocols.http1.recorder import Recording, RecordingRelay
from tests.support.servers import nginx, python_server_thread

# (method, url, extra headers, body)
REQUESTS: list[tuple[str, str, list[tuple[str, str]], bytes]] = [
    ("GET", "/bytes/10", [("Accept", "*/*")], b""),
    ("HEAD", "/bytes/100", [], b""),
    ("POST", "/echo?x=1", [("Content-Type", "application/json")], b'{"a": 1}'),
    ("PUT", "/echo", [("X-Upper-CASE", "Mixed Value")], bytes(i % 256 for i in range(1 << 20))),
    ("DELETE", "/thing/7", [], b""),
    ("GET", "/chunked/5", [], b""),
    ("GET", "/status/204", [], b""),
    ("GET", "/status/304", [], b""),
    ("PATCH", "/status/404", [], b"ab"),
]


Seen = list[tuple[str, str, list[tuple[str, str]], bytes, int, str, list[tuple[str, str]], bytes]]


@pytest.fixture(scope="module")
def client_session() -> tuple[Recording, Seen]:
    """REQUESTS sent by http.client on one keep-alive connection, recorded by the relay."""
    with python_server_thread() as srv, RecordingRelay(("127.0.0.1", srv.port)) as relay:
        conn = http.client.HTTPConnection("127.0.0.1", relay.port, timeout=30)
        seen: Seen = []
        for method, url, extra, body in REQUESTS:
            headers = [("Host", f"127.0.0.1:{relay.port}"), *extra]
            if body or method in ("POST", "PUT", "PATCH"):
                headers.append(("Content-Length", str(len(body))))
            conn.putrequest(method, url, skip_host=True, skip_accept_encoding=True)
            for name, value in headers:
                conn.putheader(name, value)
            conn.endheaders(body or None)
            resp = conn.getresponse()
            got = resp.read()
            seen.append(
                (method, url, headers, body, resp.status, resp.reason, resp.getheaders(), got)
            )
        conn.close()
        recording = relay.wait()
    return recording, seen


def _matches(ex: HttpExchange, seen: Seen) -> int:
    """Index of the client's exchange ``ex`` reproduces exactly (AssertionError if none)."""
    q, r = ex.request, ex.response
    assert q is not None and r is not None
    for i, (method, url, headers, body, status, reason, rheaders, rbody) in enumerate(seen):
        if (q.method, q.url) == (method, url):
            assert (q.version, q.headers, q.body) == ("HTTP/1.1", headers, body)
            assert (r.status_code, r.status_message, r.version) == (status, reason, "HTTP/1.1")
            assert r.headers == rheaders and r.body == rbody and r.body_size == len(rbody)
            return i
    raise AssertionError(f"no such request: {q.method} {q.url}")


def test_http_client_keep_alive_exchanges_match_what_the_client_saw(
    client_session: tuple[Recording, Seen],
) -> None:
    recording, seen = client_session
    st, out = recording.stitch(max_body=2 << 20)
    assert st.stats.parse_errors == 0 and not st.failed and not st.upgraded
    assert len(out) == len(REQUESTS)
    for ex, (method, url, headers, body, status, reason, rheaders, rbody) in zip(
        out, seen, strict=True
    ):
        assert ex.flags == set()
        q, r = ex.request, ex.response
        assert q is not None and r is not None
        assert (q.method, q.url, q.version, q.headers, q.body) == (
            method,
            url,
            "HTTP/1.1",
            headers,
            body,
        )
        assert (r.status_code, r.status_message, r.version) == (status, reason, "HTTP/1.1")
        assert r.headers == rheaders
        assert r.body == rbody and r.body_size == len(rbody)
        assert q.start_ts_ns <= q.end_ts_ns <= r.start_ts_ns <= r.end_ts_ns
    chunked = out[5].response
    assert chunked is not None
    assert chunked.body == b"".join(f"chunk-{i}\n".encode() for i in range(5))
    assert chunked.trailers == [("X-Trailer", "done")]
    assert out[3].request is not None and out[3].request.body_size == 1 << 20


def test_pipelined_requests_on_a_raw_socket() -> None:
    reqs = (
        b"".join(b"GET /bytes/%d HTTP/1.1\r\nHost: x\r\n\r\n" % n for n in (1, 2, 3))
        + b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nConnection: close\r\n\r\nxyz"
    )
    with python_server_thread() as srv, RecordingRelay(("127.0.0.1", srv.port)) as relay:
        with socket.create_connection(("127.0.0.1", relay.port), timeout=30) as s:
            s.sendall(reqs)
            received = b""
            while chunk := s.recv(65536):
                received += chunk
        recording = relay.wait()
    assert recording.raw("req") == reqs and recording.raw("resp") == received
    st, out = recording.stitch()
    assert [(e.request.url, e.response.body) for e in out if e.request and e.response] == [
        ("/bytes/1", bytes([0])),
        ("/bytes/2", bytes([0, 1])),
        ("/bytes/3", bytes([0, 1, 2])),
        ("/echo", b"xyz"),
    ]
    assert all(e.flags == set() for e in out) and st.stats.parse_errors == 0


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl_expect_100_continue(tmp_path: Path) -> None:
    body = bytes(range(256)) * 8192  # 2 MiB: curl sends Expect: 100-continue and waits
    f = tmp_path / "body.bin"
    f.write_bytes(body)
    with python_server_thread() as srv, RecordingRelay(("127.0.0.1", srv.port)) as relay:
        res = subprocess.run(
            [
                "curl",
                "-sS",
                "--data-binary",
                f"@{f}",
                "-H",
                "Expect: 100-continue",
                "-o",
                str(tmp_path / "out.bin"),
                "-w",
                "%{http_code}",
                f"http://127.0.0.1:{relay.port}/echo",
            ],
            capture_output=True,
            timeout=60,
            check=True,
        )
        recording = relay.wait()
    assert res.stdout == b"200"
    assert b"HTTP/1.1 100 Continue\r\n" in recording.raw("resp")
    st, out = recording.stitch(max_body=4 << 20)
    assert len(out) == 1 and out[0].flags == set()
    q, r = out[0].request, out[0].response
    assert q is not None and r is not None
    assert (q.method, q.url, q.body) == ("POST", "/echo", body)
    assert ("Expect", "100-continue") in q.headers
    assert (r.status_code, r.body) == (200, (tmp_path / "out.bin").read_bytes())
    assert r.body == body
    assert st.stats.interim == 1


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
def test_curl_and_nginx_keep_alive_head_gzip_chunked(tmp_path: Path) -> None:
    import gzip

    big = b"".join(b"line %06d of a compressible file\n" % i for i in range(6000))
    extra = "gzip on; gzip_types application/octet-stream; gzip_min_length 1;"
    with nginx(files={"small.txt": b"small\n", "big.bin": big}, extra=extra) as srv:
        with RecordingRelay(("127.0.0.1", srv.port)) as relay:
            base = f"http://127.0.0.1:{relay.port}"
            subprocess.run(
                ["curl", "-sS", f"{base}/small.txt", "-o", str(tmp_path / "1"),
                 "--next", "-sS", "-I", f"{base}/small.txt", "-o", str(tmp_path / "2"),
                 "--next", "-sS", "--compressed", f"{base}/big.bin", "-o", str(tmp_path / "3"),
                 "--next", "-sS", "-X", "DELETE", f"{base}/status/204"],
                capture_output=True, timeout=60, check=True,
            )  # fmt: skip
            recording = relay.wait()
        assert len(srv.access_log_lines()) == 4
    st, out = recording.stitch(max_body=4 << 20)
    assert st.stats.parse_errors == 0
    got = [
        (e.request.method, e.request.url, e.response.status_code)
        for e in out
        if e.request and e.response
    ]
    assert got == [
        ("GET", "/small.txt", 200),
        ("HEAD", "/small.txt", 200),
        ("GET", "/big.bin", 200),
        ("DELETE", "/status/204", 204),
    ]
    assert all(e.flags == set() for e in out)
    small, head, gz, nocontent = (e.response for e in out)
    assert small is not None and small.body == b"small\n"
    assert head is not None and head.body == b"" and ("Content-Length", "6") in head.headers
    assert gz is not None and ("Transfer-Encoding", "chunked") in gz.headers
    assert ("Content-Encoding", "gzip") in gz.headers
    assert gzip.decompress(gz.body) == big == (tmp_path / "3").read_bytes()
    assert nocontent is not None and nocontent.body == b""


def _starts(raw: bytes, needles: list[bytes]) -> list[int]:
    out, pos = [], 0
    for needle in needles:
        pos = raw.index(needle, pos)
        out.append(pos)
        pos += 1
    return out


def test_capture_starting_anywhere_in_a_real_connection(
    client_session: tuple[Recording, Seen],
) -> None:
    """resync=True from every chunk boundary and mid-chunk: the exchanges that began after the
    cut come out exactly; none is paired wrong."""
    recording, seen = client_session
    chunks = recording.chunks
    req_starts = _starts(recording.raw("req"), [f"{m} {u} HTTP/1.1".encode() for m, u, *_ in seen])
    resp_starts = _starts(recording.raw("resp"), [b"HTTP/1.1 %d" % s[4] for s in seen])
    for t in range(len(chunks)):
        for cut in sorted({0, len(chunks[t][1]) // 2}):
            before = {"req": 0, "resp": 0}
            for k, data, _ in chunks[:t]:
                before[k] += len(data)
            before[chunks[t][0]] += cut
            st = Http1Stitcher(max_body=2 << 20, resync=True)
            out = []
            for i, (k, data, ts) in enumerate(chunks[t:]):
                piece = data[cut:] if i == 0 else data
                if k == "req":
                    out += st.feed_request_bytes(piece, ts)
                else:
                    out += st.feed_response_bytes(piece, ts)
            out += st.close(recording.closed_ns)
            clean = [_matches(e, seen) for e in out if not e.flags]
            expected = [
                i
                for i in range(len(seen))
                if req_starts[i] >= before["req"] and resp_starts[i] >= before["resp"]
            ]
            assert clean == expected, (t, cut)


def test_a_lost_chunk_anywhere_in_a_real_connection(
    client_session: tuple[Recording, Seen],
) -> None:
    """Each chunk in turn replaced by a gap of its size: what is not flagged is exact."""
    recording, seen = client_session
    for t, (kind, data, _ts) in enumerate(recording.chunks):
        st = Http1Stitcher(max_body=2 << 20)
        out = []
        for i, (k, d, ts_i) in enumerate(recording.chunks):
            if i == t:
                out += st.request_gap(len(d), ts_i) if k == "req" else st.response_gap(len(d), ts_i)
            elif k == "req":
                out += st.feed_request_bytes(d, ts_i)
            else:
                out += st.feed_response_bytes(d, ts_i)
        out += st.close(recording.closed_ns)
        clean = [_matches(e, seen) for e in out if not e.flags]
        assert len(clean) >= len(seen) - 2, (t, kind, len(data), [e.flags for e in out])
        assert clean == sorted(set(clean))
