"""gunicorn (sync workers) running the Flask app of flask_sendfile.py, whose send_file
responses gunicorn sends with os.sendfile; an access log of the length each response
declared (gunicorn logs %(B)s as 0 for a response it sent with sendfile)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from tests.support.peers.process import serving
from tests.support.servers import free_port

HERE = Path(__file__).parent


@contextlib.contextmanager
def gunicorn_flask(root: Path, log: Path, workers: int = 2) -> Iterator[int]:
    port = free_port()
    cmd = [
        sys.executable, "-m", "gunicorn", "-w", str(workers), "-b", f"127.0.0.1:{port}",
        "--access-logfile", str(log),
        "--access-logformat", "%(m)s %(U)s %(s)s %({content-length}o)s",
        "flask_sendfile:app",
    ]  # fmt: skip
    env = {**os.environ, "NODETAP_FILES": str(root)}
    with serving(cmd, port, cwd=HERE, env=env):
        yield port
