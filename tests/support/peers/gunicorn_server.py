"""gunicorn (sync workers) serving tests/support/peers/flask_app.py on a free loopback port,
with an access log of method, path, status, response bytes and request Content-Length."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.servers import free_port, wait_for_port

REPO = Path(__file__).resolve().parents[3]
# method path status response-bytes request-content-length
ACCESS_FORMAT = "%(m)s %(U)s %(s)s %(B)s %({content-length}i)s"


@dataclass
class Gunicorn:
    port: int
    log: Path
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def access_log(self) -> list[tuple[str, str, int, int, int]]:
        """(method, path, status, response bytes, request Content-Length or 0) per line."""
        out = []
        for line in self.log.read_text().splitlines():
            m, path, status, size, clen = line.split()
            out.append((m, path, int(status), int(size), int(clen) if clen != "-" else 0))
        return out


@contextlib.contextmanager
def gunicorn(workers: int = 2, worker_class: str = "sync") -> Iterator[Gunicorn]:
    """Sync workers close each connection after one request; "gthread" keeps it alive."""
    root = Path(tempfile.mkdtemp(prefix="nodetap-gunicorn-"))
    port = free_port()
    log = root / "access.log"
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "gunicorn",
            "--chdir", str(REPO),
            "--workers", str(workers),
            "--worker-class", worker_class,
            "--threads", "2" if worker_class == "gthread" else "1",
            "--bind", f"127.0.0.1:{port}",
            "--access-logfile", str(log),
            "--access-logformat", ACCESS_FORMAT,
            "--keep-alive", "30",
            "tests.support.peers.flask_app:app",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_for_port("127.0.0.1", port, timeout=30)
        yield Gunicorn(port, log, proc)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)
