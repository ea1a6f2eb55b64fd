"""The JDK's HttpServer answering with `size` bytes in one write (JdkBigWrite.java,
run by the java launcher from source)."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

from tests.support.peers.process import serving
from tests.support.servers import free_port

SOURCE = Path(__file__).with_name("JdkBigWrite.java")


@contextlib.contextmanager
def jdk_bigwrite(size: int, log: Path | None = None) -> Iterator[int]:
    """Yields the port. With `log`: a line per request answered (node_bigwrite.server_log)."""
    port = free_port()
    cmd = [shutil.which("java") or "java", str(SOURCE), str(port), str(size)]
    with serving(cmd + ([str(log)] if log else []), port):
        yield port
