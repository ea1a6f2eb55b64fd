"""Real servers for tests: nginx and a Python HTTP server on free loopback ports.

Each starts as a child process of the test, is stopped by PID, and leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import http.server
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


def free_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.02)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


NGINX_CONF = """
worker_processes {workers};
daemon off;
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log {root}/access.log;
    client_body_temp_path {root}/body;
    proxy_temp_path {root}/proxy;
    fastcgi_temp_path {root}/fastcgi;
    uwsgi_temp_path {root}/uwsgi;
    scgi_temp_path {root}/scgi;
    # sendfile moves file bytes inside the kernel, where no syscall buffer holds them;
    # nodetap counts that as a gap. Tests want the bytes, so nginx writes them.
    sendfile off;
    keepalive_requests 100000;
    client_max_body_size 64m;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {root}/www;
        location /echo {{
            # nginx reads the body, then serves a fixed reply.
            client_body_buffer_size 64m;
            return 200 "echo\\n";
        }}
        location /status/204 {{ return 204; }}
        location /hello {{ return 200 "hello world\\n"; }}
        {extra}
    }}
}}
"""


@dataclass
class Nginx:
    port: int
    root: Path
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def worker_pids(self) -> list[int]:
        out = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(self.proc.pid)],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        return [int(x) for x in out.split()]

    def access_log_lines(self, at_least: int = 0, timeout: float = 5.0) -> list[str]:
        """The access log's lines; with at_least, wait (up to timeout) until there are that
        many: nginx writes a request's line after its last response byte, so a client that
        has its answer can read the log before the line is there."""
        deadline = time.monotonic() + timeout
        while True:
            lines = (self.root / "access.log").read_text().splitlines()
            if len(lines) >= at_least or time.monotonic() > deadline:
                return lines
            time.sleep(0.02)


@contextlib.contextmanager
def nginx(
    workers: int = 1,
    extra: str = "",
    files: dict[str, bytes] | None = None,
    ipv6: bool = False,
) -> Iterator[Nginx]:
    """Start nginx on a free loopback port with files served from its root
    (ipv6: also on [::1] with the same port)."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    root = Path(tempfile.mkdtemp(prefix="nodetap-nginx-"))
    root.chmod(0o755)  # nginx workers run as nobody when the test is root
    (root / "www").mkdir()
    for name, data in (files or {}).items():
        path = root / "www" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    port = free_port()
    if ipv6:
        extra = f"listen [::1]:{port};\n" + extra
    conf = root / "nginx.conf"
    conf.write_text(NGINX_CONF.format(workers=workers, root=root, port=port, extra=extra))
    proc = subprocess.Popen(
        [binary, "-c", str(conf), "-p", str(root), "-e", str(root / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port("127.0.0.1", port)
        yield Nginx(port=port, root=root, proc=proc)
    finally:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)


class _EchoHandler(http.server.BaseHTTPRequestHandler):
    """Echo server: replies with the request body; /chunked/N replies chunked; /status/N."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _body(self) -> bytes:
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n else b""

    def _reply(self) -> None:
        body = self._body()
        if self.path.startswith("/status/"):
            code = int(self.path.split("/")[2])
            self.send_response(code)
            if code not in (204, 304):
                self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path.startswith("/chunked/"):
            n = int(self.path.split("/")[2])
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(n):
                chunk = f"chunk-{i}\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\nX-Trailer: done\r\n\r\n")
            return
        if self.path.startswith("/bytes/"):
            n = int(self.path.split("/")[2])
            body = bytes(i % 251 for i in range(n))
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _reply


@dataclass
class PyServer:
    port: int
    pid: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def python_server_thread() -> Iterator[PyServer]:
    """The echo server in a thread of this process (pid is the test's own)."""
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _EchoHandler)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield PyServer(port=srv.server_address[1], pid=os.getpid())
    finally:
        srv.shutdown()
        srv.server_close()


@contextlib.contextmanager
def python_server_process() -> Iterator[PyServer]:
    """The echo server in a child process (its own pid, so captures can filter on it)."""
    port = free_port()
    code = (
        "import http.server,sys;"
        "from tests.support.servers import _EchoHandler;"
        f"s=http.server.ThreadingHTTPServer(('127.0.0.1',{port}),_EchoHandler);"
        "s.daemon_threads=True;s.serve_forever()"
    )
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=root)
    try:
        wait_for_port("127.0.0.1", port)
        yield PyServer(port=port, pid=proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
