"""A Node.js http server answering with one res.end() of `size` bytes (node_bigwrite.js)."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

from tests.support.peers.process import serving
from tests.support.servers import free_port

SOURCE = Path(__file__).with_name("node_bigwrite.js")


def body(size: int) -> bytes:
    """What the server sends (byte i is i % 251)."""
    return bytes(i % 251 for i in range(size))


@contextlib.contextmanager
def node_bigwrite(size: int, log: Path | None = None) -> Iterator[tuple[int, int]]:
    """Yields (port, pid). With `log`: a line per request answered (server_log())."""
    port = free_port()
    cmd = [shutil.which("node") or "node", str(SOURCE), str(port), str(size)]
    cmd += [str(log)] if log else []
    with serving(cmd, port) as proc:
        yield port, proc.pid


def server_log(log: Path) -> list[tuple[str, str, int, int]]:
    """(method, url, client port, body bytes) per request the server answered (also the
    JDK's, jdk_http.py)."""
    out = []
    for line in log.read_text().splitlines():
        m, url, port, n = line.split()
        out.append((m, url, int(port), int(n)))
    return out
