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
def node_bigwrite(size: int) -> Iterator[tuple[int, int]]:
    """Yields (port, pid)."""
    port = free_port()
    cmd = [shutil.which("node") or "node", str(SOURCE), str(port), str(size)]
    with serving(cmd, port) as proc:
        yield port, proc.pid
