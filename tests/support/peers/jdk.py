"""The JDK's HttpServer and HttpClient (tests/support/peers/JdkPeer.java), compiled once per
test session into a temporary directory.

The client asks to upgrade to h2c on every request (the JDK's default for http:// URLs);
HttpServer never accepts, so the connection stays HTTP/1.1."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from tests.support.servers import free_port, wait_for_port

SOURCE = Path(__file__).with_name("JdkPeer.java")


@cache
def classes() -> Path:
    """The compiled peer (javac into a fresh temporary directory, once)."""
    out = Path(tempfile.mkdtemp(prefix="nodetap-jdk-"))
    subprocess.run(["javac", "-d", str(out), str(SOURCE)], check=True, timeout=300)
    return out


@dataclass
class JdkServer:
    port: int
    log: Path
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requests(self) -> list[tuple[str, str, int, int]]:
        """(method, path, request body bytes, response body bytes) the server handled."""
        out = []
        for line in self.log.read_text().splitlines():
            if line.startswith("LOG "):
                _, m, path, n_in, n_out = line.split()
                out.append((m, path, int(n_in), int(n_out)))
        return out


@contextlib.contextmanager
def jdk_server() -> Iterator[JdkServer]:
    cp = classes()
    port = free_port()
    root = Path(tempfile.mkdtemp(prefix="nodetap-jdk-run-"))
    log = root / "server.log"
    with log.open("wb") as f:
        proc = subprocess.Popen(
            ["java", "-cp", str(cp), "JdkPeer", "server", str(port)],
            stdout=f,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port("127.0.0.1", port, timeout=60)
        yield JdkServer(port, log, proc)
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def jdk_client(url: str, upload: int) -> list[tuple[int, str]]:
    """Run the client: GET /first, POST /upload (`upload` bytes), GET /after on one
    connection; return (status, body) of each answer as the client saw it."""
    run = subprocess.run(
        ["java", "-cp", str(classes()), "JdkPeer", "client", url, str(upload)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    out = []
    for line in run.stdout.splitlines():
        if line.startswith("RES "):
            _, status, body = line.split(" ", 2)
            out.append((int(status), body))
    return out
