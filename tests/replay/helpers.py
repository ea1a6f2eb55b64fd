"""Captures for replay tests: real exchanges with a server, turned into RRPairs."""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterable
from pathlib import Path

from agent.protocols.http1.types import HttpExchange, HttpRequest, HttpResponse
from agent.rrpairs import ConnContext, RRPairIds, build_http_rrpair
from nodetap import jsonl

Req = tuple[str, str, list[tuple[str, str]], bytes]  # method, url, headers, body


def record(
    host: str,
    port: int,
    requests: Iterable[Req],
    out: Path,
    gap_s: float = 0.0,
    close: bool = False,
    ts_step_ns: int | None = None,
) -> int:
    """Send each request with http.client, write the exchanges as an RRPair JSONL capture.

    ts_step_ns: give the pairs synthetic timestamps this far apart instead of the real ones.
    """
    ids = RRPairIds("test")
    n = 0
    conn = http.client.HTTPConnection(host, port, timeout=10)
    t_base = time.time_ns()
    with out.open("w") as f:
        for i, (method, url, headers, body) in enumerate(requests):
            hs = list(headers)
            if close:
                hs.append(("Connection", "close"))
            start = time.time_ns()
            conn.putrequest(method, url, skip_host=True, skip_accept_encoding=True)
            if not any(h.lower() == "host" for h, _ in hs):
                hs.insert(0, ("Host", f"{host}:{port}"))
            if body or method in ("POST", "PUT", "PATCH"):
                hs.append(("Content-Length", str(len(body))))
            for name, value in hs:
                conn.putheader(name, value)
            conn.endheaders(body or None)
            resp = conn.getresponse()
            rbody = resp.read()
            end = time.time_ns()
            if ts_step_ns is not None:
                start, end = t_base + i * ts_step_ns, t_base + i * ts_step_ns + (end - start)
            req = HttpRequest(
                method, url, "HTTP/1.1", hs, body, len(body), start_ts_ns=start, end_ts_ns=start
            )
            res = HttpResponse(
                resp.status,
                resp.reason,
                "HTTP/1.1",
                [(k, v) for k, v in resp.getheaders()],
                rbody,
                len(rbody),
                start_ts_ns=end,
                end_ts_ns=end,
            )
            ctx = ConnContext("OUTBOUND", "127.0.0.1", 40000, host, port, "syscall", conn_id=1)
            jsonl.write(f, build_http_rrpair(HttpExchange(req, res), ctx, ids.next()))
            n += 1
            if close or resp.will_close:
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=10)
            if gap_s:
                time.sleep(gap_s)
    conn.close()
    return n
