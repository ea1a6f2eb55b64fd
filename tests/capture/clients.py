"""Real HTTP clients for capture tests, each in a process of its own.

The capture never traces its own process, so every client runs as a child process: curl,
a Python ``http.client`` client, a raw-socket client, wrk. Each helper returns what the
client itself sent and received (headers in wire order, bodies, its local port), so that
tests compare the captured RRPairs with the client's own view of the exchange.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

Headers = list[tuple[str, str]]

TIMEOUT = 60.0


# ---- curl --------------------------------------------------------------------------------


@dataclass
class CurlResponse:
    status_line: str
    headers: Headers

    @property
    def status(self) -> int:
        return int(self.status_line.split()[1])


@dataclass
class CurlExchange:
    """One request curl sent (from its -v trace) and every response head it read
    (1xx interim responses first, the final one last)."""

    request_line: str
    headers: Headers
    responses: list[CurlResponse] = field(default_factory=list)

    @property
    def method(self) -> str:
        return self.request_line.split()[0]

    @property
    def url(self) -> str:
        return self.request_line.split()[1]

    @property
    def final(self) -> CurlResponse:
        return self.responses[-1]


@dataclass
class CurlRun:
    exchanges: list[CurlExchange]
    local_ports: list[int]  # one per URL (from -w %{local_port})
    stdout: bytes


def _header(line: str) -> tuple[str, str]:
    name, _, value = line.partition(":")
    return name, value.strip(" \t")


def parse_curl_trace(stderr: str) -> list[CurlExchange]:
    """The request and response heads in curl's -v output, in order."""
    out: list[CurlExchange] = []
    req: CurlExchange | None = None
    res: CurlResponse | None = None
    for raw in stderr.splitlines():
        line = raw.rstrip("\r")
        if line.rstrip() in (">", "<"):
            line = line.rstrip()  # the empty line after a head
        if line.startswith("> ") and req is None:
            req = CurlExchange(line[2:], [])
            out.append(req)
        elif line.startswith("> ") and req is not None:
            req.headers.append(_header(line[2:]))
        elif line == ">":
            req = None
        elif line.startswith("< ") and (res is None or line.startswith("< HTTP/")):
            # (curl prints no empty line after a 1xx head)
            res = CurlResponse(line[2:], [])
            out[-1].responses.append(res)
        elif line.startswith("< ") and res is not None:
            res.headers.append(_header(line[2:]))
        elif line == "<":
            res = None
    return out


def curl(*args: str, stdin: bytes | None = None) -> CurlRun:
    """Run curl with -v; `args` are curl options and URLs (several URLs share one
    keep-alive connection). Bodies go to stdout unless the caller passes -o."""
    marker = "\n@@nodetap-local-port=%{local_port}@@\n"
    proc = subprocess.run(
        ["curl", "-sS", "-v", "-w", marker, *args],
        input=stdin,
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    err = proc.stderr.decode("iso-8859-1")
    if proc.returncode != 0:
        raise AssertionError(f"curl exited {proc.returncode}: {err[-2000:]}")
    ports = [int(m) for m in re.findall(rb"@@nodetap-local-port=(\d+)@@", proc.stdout)]
    body = re.sub(rb"\n@@nodetap-local-port=\d+@@\n", b"", proc.stdout)
    return CurlRun(parse_curl_trace(err), ports, body)


# ---- Python http.client --------------------------------------------------------------------


@dataclass
class Request:
    """A request sent exactly as given: these headers, in this order, and no others."""

    method: str
    url: str
    headers: Headers
    body: bytes = b""

    def to_json(self) -> dict[str, object]:
        return {
            "method": self.method,
            "url": self.url,
            "headers": self.headers,
            "body": base64.b64encode(self.body).decode(),
        }


@dataclass
class Response:
    """What the client read: status, reason, headers in wire order, body."""

    status: int
    reason: str
    version: str
    headers: Headers
    body: bytes


@dataclass
class PyRun:
    local_port: int
    responses: list[Response]


HTTP_CLIENT = r"""
import base64, http.client, json, socket, sys
spec = json.loads(sys.stdin.readline())
conn = http.client.HTTPConnection(spec["host"], spec["port"], timeout=30)
conn.connect()
port = conn.sock.getsockname()[1]

def run(reqs):
    out = []
    for r in reqs:
        conn.putrequest(r["method"], r["url"], skip_host=True, skip_accept_encoding=True)
        for name, value in r["headers"]:
            conn.putheader(name, value)
        body = base64.b64decode(r["body"])
        conn.endheaders(body or None)
        res = conn.getresponse()
        data = res.read()
        out.append({
            "status": res.status, "reason": res.reason,
            "version": "HTTP/1.1" if res.version == 11 else "HTTP/1.0",
            "headers": res.getheaders(),
            "body": base64.b64encode(data).decode(),
        })
    return out

first = run(spec["before"])
if spec["pause"]:
    print(json.dumps({"port": port}), flush=True)
    sys.stdin.readline()
after = run(spec["after"])
print(json.dumps({"port": port, "responses": first + after}), flush=True)
conn.close()
"""


def _responses(items: list[dict[str, object]]) -> list[Response]:
    return [
        Response(
            status=int(r["status"]),  # type: ignore[call-overload]
            reason=str(r["reason"]),
            version=str(r["version"]),
            headers=[(str(n), str(v)) for n, v in r["headers"]],  # type: ignore[attr-defined]
            body=base64.b64decode(str(r["body"])),
        )
        for r in items
    ]


def _spec(host: str, port: int, before: list[Request], after: list[Request], pause: bool) -> str:
    return (
        json.dumps(
            {
                "host": host,
                "port": port,
                "before": [r.to_json() for r in before],
                "after": [r.to_json() for r in after],
                "pause": pause,
            }
        )
        + "\n"
    )


def py_http(host: str, port: int, requests: list[Request]) -> PyRun:
    """Send the requests on one keep-alive connection from a Python http.client process."""
    proc = subprocess.run(
        [sys.executable, "-c", HTTP_CLIENT],
        input=_spec(host, port, [], requests, False).encode(),
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(f"python client failed: {proc.stderr.decode()[-2000:]}")
    res = json.loads(proc.stdout)
    return PyRun(int(res["port"]), _responses(res["responses"]))


PARALLEL_CLIENT = r"""
import base64, http.client, json, sys, threading
spec = json.loads(sys.stdin.readline())
results = [None] * len(spec["conns"])

def send(conn, r):
    conn.putrequest(r["method"], r["url"], skip_host=True, skip_accept_encoding=True)
    for name, value in r["headers"]:
        conn.putheader(name, value)
    conn.endheaders(base64.b64decode(r["body"]) or None)
    res = conn.getresponse()
    return {
        "status": res.status, "reason": res.reason,
        "version": "HTTP/1.1" if res.version == 11 else "HTTP/1.0",
        "headers": res.getheaders(),
        "body": base64.b64encode(res.read()).decode(),
    }

def worker(k, conn, reqs):
    try:
        out = results[k]["responses"]
        for r in reqs:
            out.append(send(conn, r))
        conn.close()
    except BaseException as e:
        results[k] = {"error": repr(e)}

# Connect one at a time, each with its first exchange done (a server with a short accept
# queue, like Python's socketserver, resets connects that overflow it), then go parallel.
conns = []
for k, reqs in enumerate(spec["conns"]):
    conn = http.client.HTTPConnection(spec["host"], spec["port"], timeout=30)
    conn.connect()
    results[k] = {"port": conn.sock.getsockname()[1], "responses": [send(conn, reqs[0])]}
    conns.append(conn)
threads = [
    threading.Thread(target=worker, args=(k, conn, reqs[1:]))
    for k, (conn, reqs) in enumerate(zip(conns, spec["conns"]))
]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(results), flush=True)
"""


def py_http_parallel(host: str, port: int, conns: list[list[Request]]) -> list[PyRun]:
    """One Python process, one keep-alive connection per request list, all open at the same
    time (same process, different fds); after its first exchange, each runs in a thread of
    its own, all in parallel."""
    spec = {"host": host, "port": port, "conns": [[r.to_json() for r in c] for c in conns]}
    proc = subprocess.run(
        [sys.executable, "-c", PARALLEL_CLIENT],
        input=(json.dumps(spec) + "\n").encode(),
        capture_output=True,
        timeout=TIMEOUT,
        check=False,
    )
    if proc.returncode != 0:
        raise AssertionError(f"python client failed: {proc.stderr.decode()[-2000:]}")
    results = json.loads(proc.stdout)
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise AssertionError(f"python client connections failed: {errors}")
    return [PyRun(int(r["port"]), _responses(r["responses"])) for r in results]


class PausedClient:
    """A Python http.client process that sends `before`, then waits with its connection
    open until `resume()` makes it send `after` on the same connection."""

    def __init__(self, host: str, port: int, before: list[Request], after: list[Request]):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", HTTP_CLIENT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(_spec(host, port, before, after, True).encode())
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            self.close()
            raise AssertionError("paused client did not start")
        self.local_port = int(json.loads(line)["port"])

    def resume(self) -> list[Response]:
        assert self.proc.stdin is not None
        out, err = self.proc.communicate(b"go\n", timeout=TIMEOUT)
        if self.proc.returncode != 0:
            raise AssertionError(f"paused client failed: {err.decode()[-2000:]}")
        return _responses(json.loads(out)["responses"])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def __enter__(self) -> PausedClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ---- raw sockets ---------------------------------------------------------------------------

RAW_CLIENT = r"""
import base64, json, socket, sys
spec = json.loads(sys.stdin.readline())
family = socket.AF_INET6 if ":" in spec["host"] else socket.AF_INET
s = socket.socket(family, socket.SOCK_STREAM)
s.settimeout(30)
s.connect((spec["host"], spec["port"]))
port = s.getsockname()[1]
got = bytearray()
for op, arg in spec["steps"]:
    if op == "send":
        s.sendall(base64.b64decode(arg))
    elif op == "read":  # until `arg` bytes in all were received (None: until the peer closes)
        while arg is None or len(got) < arg:
            chunk = s.recv(65536 if arg is None else min(65536, arg - len(got)))
            if not chunk:
                break
            got += chunk
    elif op == "sendmsg":  # one sendmsg() with these buffers as its iovecs
        parts = [base64.b64decode(a) for a in arg]
        total, sent = sum(map(len, parts)), s.sendmsg(parts)
        if sent < total:
            s.sendall(b"".join(parts)[sent:])
    elif op == "readmsg":  # as "read", with recvmsg_into() into three buffers
        bufs = [bytearray(7), bytearray(300), bytearray(65536)]
        while arg is None or len(got) < arg:
            n = s.recvmsg_into(bufs)[0]
            if not n:
                break
            got += b"".join(bufs)[:n]
    elif op == "pause":
        print(json.dumps({"port": port}), flush=True)
        sys.stdin.readline()
s.close()
print(json.dumps({"port": port, "data": base64.b64encode(bytes(got)).decode()}), flush=True)
"""

Step = tuple[str, bytes | list[bytes] | int | None]


def _b64(arg: bytes | list[bytes] | int | None) -> str | list[str] | int | None:
    if isinstance(arg, bytes):
        return base64.b64encode(arg).decode()
    if isinstance(arg, list):
        return [base64.b64encode(a).decode() for a in arg]
    return arg


@dataclass
class RawRun:
    local_port: int
    received: bytes


class RawClient:
    """A raw-socket client process running `steps` on one connection, then closing it:
    ("send", bytes) writes them in one go; ("sendmsg", [bytes, ...]) writes them with one
    sendmsg() (an iovec each); ("read", n) reads until n bytes in all were received (None:
    until the server closes); ("readmsg", n) the same with recvmsg() into three buffers;
    ("pause", None) waits for `resume()`."""

    def __init__(self, host: str, port: int, steps: list[Step]) -> None:
        wire = [(op, _b64(arg)) for op, arg in steps]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", RAW_CLIENT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(
            (json.dumps({"host": host, "port": port, "steps": wire}) + "\n").encode()
        )
        self.proc.stdin.flush()
        self.local_port = 0
        if any(op == "pause" for op, _ in steps):
            line = self.proc.stdout.readline()
            if not line:
                self.close()
                raise AssertionError("raw client did not reach its pause")
            self.local_port = int(json.loads(line)["port"])

    def resume(self) -> RawRun:
        """Let the client run to its end (past its pause, if any)."""
        out, err = self.proc.communicate(b"go\n", timeout=TIMEOUT)
        if self.proc.returncode != 0:
            raise AssertionError(f"raw client failed: {err.decode()[-2000:]}")
        res = json.loads(out.splitlines()[-1])
        return RawRun(int(res["port"]), base64.b64decode(res["data"]))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def raw_exchange(host: str, port: int, data: bytes, read_limit: int | None = None) -> RawRun:
    """Connect, send `data` in one go (several requests: pipelining), read until the
    server closes (or until `read_limit` bytes, then close mid-response)."""
    with RawClient(host, port, [("send", data), ("read", read_limit)]) as client:
        return client.resume()


def split_responses(data: bytes, methods: list[str]) -> list[Response]:
    """Cut a byte stream of Content-Length-framed responses (as the raw client read
    them) into responses, one per request method given (HEAD, 1xx, 204 and 304 have no
    body). Only for tests that control the servers' framing."""
    out: list[Response] = []
    pos = 0
    for method in methods:
        end = data.index(b"\r\n\r\n", pos)
        lines = data[pos:end].decode("iso-8859-1").split("\r\n")
        version, status, reason = (lines[0].split(" ", 2) + [""])[:3]
        headers = [_header(line) for line in lines[1:]]
        length = int(next((v for n, v in headers if n.lower() == "content-length"), "0"))
        if method == "HEAD" or status in ("204", "304"):
            length = 0
        body = data[end + 4 : end + 4 + length]
        out.append(Response(int(status), reason, version, headers, body))
        pos = end + 4 + length
    assert pos == len(data), f"{len(data) - pos} bytes left after {len(methods)} responses"
    return out


# ---- wrk -----------------------------------------------------------------------------------


@dataclass
class WrkRun:
    requests: int  # completed responses, as wrk counts them
    output: str


def wrk(url: str, connections: int, duration_s: int, threads: int = 2, delay_ms: int = 0) -> WrkRun:
    """Run wrk for a bounded time; return how many responses it completed. With
    `delay_ms`, each connection waits that long before each request (bounds the total)."""
    with tempfile.TemporaryDirectory(prefix="nodetap-wrk-") as tmp:
        cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration_s}s"]
        if delay_ms:
            script = Path(tmp) / "delay.lua"
            script.write_text(f"function delay()\n  return {int(delay_ms)}\nend\n")
            cmd += ["-s", str(script)]
        proc = subprocess.run(
            [*cmd, url],
            capture_output=True,
            text=True,
            timeout=duration_s + TIMEOUT,
            check=False,
        )
    if proc.returncode != 0:
        raise AssertionError(f"wrk exited {proc.returncode}: {proc.stderr[-2000:]}")
    m = re.search(r"(\d+) requests in", proc.stdout)
    assert m, proc.stdout
    return WrkRun(int(m.group(1)), proc.stdout)
