"""Python ``http.client`` clients for capture tests, each in a process of its own: one
connection (``py_http``), several in parallel (``py_http_parallel``), or one that pauses with
its connection open (``PausedClient``). Each returns what the client sent and read."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

from tests.capture.clients import TIMEOUT, PyRun, Request, Response

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
