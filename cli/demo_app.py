"""The demo service of `nodetap demo`: a small JSON API over HTTP/1.1 (a real server
process on loopback), and the client traffic the demo sends to it.

    python -m cli.demo_app serve PORT      # prints "ready" once listening
    python -m cli.demo_app drive URL       # a mix of real requests, prints a count
"""

from __future__ import annotations

import http.client
import http.server
import json
import sys
import threading
import time
import uuid
from typing import Any
from urllib.parse import urlsplit


class DemoAPI(http.server.BaseHTTPRequestHandler):
    """In-memory items store: GET/POST /api/items, GET/PUT/DELETE /api/items/N,
    /api/report (chunked), /healthz, /static/logo.bin (with Last-Modified / 304)."""

    protocol_version = "HTTP/1.1"
    server_version = "nodetap-demo/1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    items: dict[int, dict[str, Any]] = {1: {"id": 1, "name": "kettle", "price": 25}}
    lock = threading.Lock()
    logo = bytes(range(256)) * 64
    logo_mtime = "Mon, 02 Nov 2026 10:00:00 GMT"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _send(self, code: int, body: bytes = b"", ctype: str = "application/json") -> None:
        self.send_response(code)
        if code not in (204, 304):
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Request-Id", str(uuid.uuid4()))  # differs on every run
        self.end_headers()
        if self.command != "HEAD" and code not in (204, 304):
            self.wfile.write(body)

    def _json(self, code: int, obj: object) -> None:
        self._send(code, json.dumps(obj, sort_keys=True).encode())

    def _body(self) -> Any:
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b"{}"
        try:
            return json.loads(raw)
        except ValueError:
            return None

    def _item_id(self) -> int | None:
        tail = urlsplit(self.path).path.rsplit("/", 1)[-1]
        return int(tail) if tail.isdigit() else None

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path == "/healthz":
            self._send(200, b"ok\n", "text/plain")
        elif path == "/api/items":
            with self.lock:
                items = sorted(self.items.values(), key=lambda i: i["id"])
            self._json(200, {"items": items, "servedAt": time.time()})
        elif path.startswith("/api/items/"):
            with self.lock:
                item = self.items.get(self._item_id() or -1)
            self._json(200, item) if item else self._json(404, {"error": "no such item"})
        elif path == "/api/report":
            self.send_response(200)
            self.send_header("Content-Type", "text/csv")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(5):
                line = f"{i},row-{i}\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/static/logo.bin":
            if self.headers.get("If-Modified-Since") == self.logo_mtime:
                self._send(304)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Last-Modified", self.logo_mtime)
            self.send_header("Content-Length", str(len(self.logo)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(self.logo)
        else:
            self._json(404, {"error": "not found"})

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_POST(self) -> None:
        data = self._body()
        if not isinstance(data, dict) or "name" not in data:
            self._json(400, {"error": "need a JSON object with a name"})
            return
        with self.lock:
            new_id = max(self.items, default=0) + 1
            self.items[new_id] = {"id": new_id, **data}
        self._json(201, self.items[new_id])

    def do_PUT(self) -> None:
        data = self._body()
        iid = self._item_id()
        with self.lock:
            if iid is None or not isinstance(data, dict):
                self._json(400, {"error": "bad request"})
                return
            self.items[iid] = {"id": iid, **data}
        self._json(200, self.items[iid])

    def do_DELETE(self) -> None:
        with self.lock:
            found = self.items.pop(self._item_id() or -1, None)
        self._send(204) if found else self._json(404, {"error": "no such item"})


def serve(port: int) -> None:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), DemoAPI)
    srv.daemon_threads = True
    print("ready", flush=True)
    srv.serve_forever()


def drive(url: str) -> int:
    """Send the demo's request mix on a few keep-alive connections; return the count."""
    host = urlsplit(url)
    n = 0

    def req(c: http.client.HTTPConnection, method: str, path: str, body: Any = None,
            headers: dict[str, str] | None = None) -> None:  # fmt: skip
        nonlocal n
        data = json.dumps(body).encode() if body is not None else None
        hdrs = {"Content-Type": "application/json"} if data else {}
        hdrs.update(headers or {})
        c.request(method, path, body=data, headers=hdrs)
        c.getresponse().read()
        n += 1

    c = http.client.HTTPConnection(host.hostname or "127.0.0.1", host.port, timeout=10)
    req(c, "GET", "/healthz")
    req(c, "GET", "/api/items")
    for i in range(5):
        req(c, "POST", "/api/items", {"name": f"widget-{i}", "price": 10 + i})
    req(c, "GET", "/api/items/2")
    req(c, "PUT", "/api/items/2", {"name": "widget-renamed", "price": 99})
    req(c, "DELETE", "/api/items/3")
    req(c, "GET", "/api/items/404")
    req(c, "POST", "/api/items", {"oops": True})
    req(c, "GET", "/api/report")
    req(c, "HEAD", "/static/logo.bin")
    req(c, "GET", "/static/logo.bin")
    req(c, "GET", "/static/logo.bin", headers={"If-Modified-Since": DemoAPI.logo_mtime})
    c.close()
    return n


def main() -> None:
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]))
    elif sys.argv[1] == "drive":
        print(drive(sys.argv[2]))
    else:
        raise SystemExit(f"usage: {sys.argv[0]} serve PORT | drive URL")


if __name__ == "__main__":
    main()
