"""Real HTTP clients for capture tests, each in a process of its own.

The capture never traces its own process, so every client runs as a child process: curl and
wrk (here), a Python ``http.client`` client (tests/capture/py_clients.py), a raw-socket client
(tests/capture/raw_client.py). Each helper returns what the client itself sent and received
(headers in wire order, bodies, its local port), so that tests compare the captured RRPairs
with the client's own view of the exchange. The requests and responses they share are here.
"""

from __future__ import annotations

import base64
import re
import subprocess
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


def header_field(line: str) -> tuple[str, str]:
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
            req.headers.append(header_field(line[2:]))
        elif line == ">":
            req = None
        elif line.startswith("< ") and (res is None or line.startswith("< HTTP/")):
            # (curl prints no empty line after a 1xx head)
            res = CurlResponse(line[2:], [])
            out[-1].responses.append(res)
        elif line.startswith("< ") and res is not None:
            res.headers.append(header_field(line[2:]))
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
