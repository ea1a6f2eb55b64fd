"""What the static-file servers of the fidelity tests share (Debian's nginx and Apache):
a private folder with the files to serve, the server's access log in one format (`METHOD
URI STATUS BODY_BYTES` per line), and starting and stopping the server by PID."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.servers import free_port, wait_for_port


@dataclass
class StaticServer:
    port: int
    root: Path
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def access_log(self) -> list[tuple[str, str, int, int]]:
        """(method, path, status, body bytes sent) per request served."""
        out = []
        for line in (self.root / "access.log").read_text().splitlines():
            method, uri, status, sent = line.split()
            out.append((method, uri, int(status), int(sent)))
        return out


@contextlib.contextmanager
def static_server(
    name: str,
    files: dict[str, bytes],
    command: Callable[[Path, int], list[str]],
    stop_signal: signal.Signals,
    stop_timeout: float = 10,
) -> Iterator[StaticServer]:
    """Serve `files` from ROOT/www with `command(ROOT, port)` (which writes its config under
    ROOT and returns the argv); stopped with `stop_signal`, then killed after
    `stop_timeout` seconds; ROOT removed."""
    root = Path(tempfile.mkdtemp(prefix=f"nodetap-{name}-"))
    root.chmod(0o755)  # the workers run as nobody
    (root / "www").mkdir()
    for file, data in files.items():
        (root / "www" / file).write_bytes(data)
    port = free_port()
    proc = subprocess.Popen(
        command(root, port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for_port("127.0.0.1", port)
        yield StaticServer(port, root, proc)
    finally:
        proc.send_signal(stop_signal)
        try:
            proc.wait(timeout=stop_timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(root, ignore_errors=True)
