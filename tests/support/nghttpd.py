"""nghttp2's nghttpd serving h2c (prior knowledge) on a free loopback port: a small page and
a 300 KB file, for the HTTP/2 tests (tests/core/test_h2_peers.py, test_h2_live.py)."""

from __future__ import annotations

import contextlib
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.support.servers import free_port, wait_for_port

INDEX = b"<h1>hello</h1>\n" * 10  # /index.html
BIG = random.Random(3).randbytes(300_000)  # /big.bin


@contextlib.contextmanager
def nghttpd(folder: Path) -> Iterator[int]:
    """Serve INDEX and BIG from folder/www; yields the port; stops the server it started."""
    docroot = folder / "www"
    docroot.mkdir()
    (docroot / "index.html").write_bytes(INDEX)
    (docroot / "big.bin").write_bytes(BIG)
    port = free_port()
    proc = subprocess.Popen(
        ["nghttpd", "--no-tls", "-d", str(docroot), "-a", "127.0.0.1", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port("127.0.0.1", port)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)
