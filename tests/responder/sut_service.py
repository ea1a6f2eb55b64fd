"""A service under test for the mocks tests: answers /ka/NAME from its dependency over one
kept-alive connection, /new/NAME over a new connection per request, and reports each request
to the dependency's /audit?seq=N (a call no two runs make alike; its answer is ignored).

    python -m tests.responder.sut_service PORT DEPENDENCY_PORT
"""

from __future__ import annotations

import http.client
import http.server
import itertools
import sys
import threading

DEP = ("127.0.0.1", 0)
_seq = itertools.count(1)
_ka = threading.local()


def _call(path: str, keep: bool) -> tuple[int, bytes]:
    try:
        return _call_once(path, keep)
    except (http.client.RemoteDisconnected, ConnectionError):
        if not keep:
            raise
        _ka.conn = None  # the kept-alive connection went stale: a new one, as urllib3 does
        return _call_once(path, keep)


def _call_once(path: str, keep: bool) -> tuple[int, bytes]:
    if keep:
        conn = getattr(_ka, "conn", None)
        if conn is None:
            conn = _ka.conn = http.client.HTTPConnection(*DEP, timeout=10)
    else:
        conn = http.client.HTTPConnection(*DEP, timeout=10)
    conn.request("GET", path, headers={} if keep else {"Connection": "close"})
    r = conn.getresponse()
    body = r.read()
    if not keep:
        conn.close()
    return r.status, body


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        _, kind, name = self.path.split("/", 2)
        status, body = _call(f"/{name}", kind == "ka")
        _call(f"/audit?seq={next(_seq)}", False)
        out = b"sut saw: " + body
        self.send_response(200 if status == 200 else 502)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)


if __name__ == "__main__":
    DEP = ("127.0.0.1", int(sys.argv[2]))
    srv = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    srv.serve_forever()
