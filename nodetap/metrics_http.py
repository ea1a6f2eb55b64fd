"""A small HTTP endpoint for metrics and health, shared by the agent, forwarder and replay agent.

``serve(addr)`` starts a threaded server in the background and returns at once:

- ``/metrics``  Prometheus text format from prometheus-client's default registry
- ``/healthz``  200 while the process serves at all (liveness)
- ``/readyz``   200 once ``ready()`` returns true, 503 before (readiness)
- ``/status``   JSON from ``status()`` (404 when no status callback was given)

The command line's ``--metrics-addr ADDR`` flag is in cli/options/metrics.py.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from nodetap.errors import ConfigError, HostError

log = logging.getLogger(__name__)

DEFAULT_METRICS_ADDR = "127.0.0.1:9464"


def parse_addr(addr: str) -> tuple[str, int]:
    """'HOST:PORT', ':PORT' (all interfaces), '[::1]:PORT' or 'PORT' -> (host, port)."""
    text = addr.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "", text
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        raise ConfigError(
            f"bad address {addr!r}; use HOST:PORT, :PORT or PORT (e.g. 0.0.0.0:9464)"
        ) from None
    if not 0 <= port <= 65535:
        raise ConfigError(f"bad port in {addr!r}; use a port between 0 and 65535")
    return (host or "0.0.0.0"), port


class _Handler(BaseHTTPRequestHandler):
    server: _HTTPServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _send(self, code: int, body: bytes, content_type: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        try:
            if path == "/metrics":
                self._send(200, generate_latest(REGISTRY), CONTENT_TYPE_LATEST)
            elif path == "/healthz":
                self._send(200, b"ok\n", "text/plain; charset=utf-8")
            elif path == "/readyz":
                if self.server.ready():
                    self._send(200, b"ready\n", "text/plain; charset=utf-8")
                else:
                    self._send(503, b"not ready\n", "text/plain; charset=utf-8")
            elif path == "/status" and self.server.status is not None:
                body = json.dumps(self.server.status(), indent=2, default=str).encode() + b"\n"
                self._send(200, body, "application/json")
            else:
                self._send(404, b"not found\n", "text/plain; charset=utf-8")
        except BrokenPipeError:
            pass
        except Exception as e:  # a callback failed: report it, keep serving
            log.warning("%s failed: %s", path, e)
            self._send(500, f"error: {e}\n".encode(), "text/plain; charset=utf-8")


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        addr: tuple[str, int],
        ready: Callable[[], bool],
        status: Callable[[], Any] | None,
    ) -> None:
        if ":" in addr[0]:
            import socket

            self.address_family = socket.AF_INET6
        super().__init__(addr, _Handler)
        self.ready = ready
        self.status = status


class Server:
    """A running metrics/health server; ``close()`` stops it (idempotent)."""

    def __init__(self, httpd: _HTTPServer) -> None:
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="nodetap-http",
            daemon=True,
        )
        self._thread.start()
        self._closed = False

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        host = self.host
        if host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(
    addr: str,
    ready: Callable[[], bool] = lambda: True,
    status: Callable[[], Any] | None = None,
) -> Server:
    """Serve /metrics, /healthz, /readyz and /status on ``addr`` (port 0: any free port)."""
    host, port = parse_addr(addr)
    try:
        httpd = _HTTPServer((host, port), ready, status)
    except OSError as e:
        raise HostError(
            f"cannot listen on {addr} for metrics: {e.strerror}; pick another --metrics-addr"
        ) from None
    server = Server(httpd)
    log.info("metrics and health on %s", server.url)
    return server
