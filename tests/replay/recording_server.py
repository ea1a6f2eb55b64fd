"""A Python HTTP/1.1 server that logs every request it receives (JSON lines) and replies JSON.

Run: python recording_server.py HOST PORT LOGFILE
Reply: {"path": ..., "method": ..., "len": body length, "ts": time, "id": counter}.
"""

from __future__ import annotations

import hashlib
import http.server
import itertools
import json
import sys
import time
from typing import Any

_ids = itertools.count(1)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go in two writes: no delayed-ACK stall
    log_file: Any = None  # set in main

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _handle(self) -> None:
        t = time.time()
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else b""
        rec = {
            "t": t,
            "method": self.command,
            "path": self.path,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body_sha256": hashlib.sha256(body).hexdigest(),
        }
        assert self.log_file is not None
        self.log_file.write(json.dumps(rec) + "\n")
        self.log_file.flush()
        reply = json.dumps(
            {"path": self.path, "method": self.command, "len": len(body), "ts": t, "id": next(_ids)}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(reply)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _handle


def main() -> None:
    host, port, log = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    Handler.log_file = open(log, "a")  # noqa: SIM115
    cls = http.server.ThreadingHTTPServer
    cls.request_queue_size = 1024  # the default backlog of 5 drops SYNs under load
    if ":" in host:
        cls.address_family = __import__("socket").AF_INET6
    srv = cls((host, port), Handler)
    srv.daemon_threads = True
    srv.serve_forever()


if __name__ == "__main__":
    main()
