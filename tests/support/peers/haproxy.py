"""haproxy (Debian's package) in front of a server, logging per request the client's port
and the source port of its own connection to the server: what nodetap's RRPairs of each
hop must carry.

Runs in the foreground (-db) as a child of the test, logs to stdout, stopped by PID.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.servers import free_port, wait_for_port

CONFIG = """
global
    log stdout format raw local0
    maxconn 256
defaults
    mode http
    log global
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    log-format "HAPLOG %ci %cp %bi %bp %HM %HU %ST %B"
frontend fe
    bind 127.0.0.1:{port}
    default_backend be
backend be
    server app 127.0.0.1:{backend_port}
"""

_LINE = re.compile(r"HAPLOG (\S+) (\d+) (\S+) (\d+) (\S+) (\S+) (\d+) (\d+)")


@dataclass(frozen=True)
class HaproxyLogLine:
    client_ip: str
    client_port: int
    backend_ip: str  # haproxy's own address on its connection to the server
    backend_port: int
    method: str
    url: str
    status: int
    bytes: int


class Haproxy:
    """A running haproxy; its log lines are read by a thread as they come."""

    def __init__(self, port: int, proc: subprocess.Popen[bytes]) -> None:
        self.port = port
        self.proc = proc
        self.lines: list[HaproxyLogLine] = []
        self._cv = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            m = _LINE.search(raw.decode("utf-8", "replace"))
            if not m:
                continue
            ci, cp, bi, bp, meth, url, st, nb = m.groups()
            with self._cv:
                self.lines.append(
                    HaproxyLogLine(ci, int(cp), bi, int(bp), meth, url, int(st), int(nb))
                )
                self._cv.notify_all()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def requests(self, expect: int, timeout: float = 20.0) -> list[HaproxyLogLine]:
        """haproxy's log lines, once `expect` of them are in (or on timeout)."""
        with self._cv:
            self._cv.wait_for(lambda: len(self.lines) >= expect, timeout)
            return list(self.lines)


@contextlib.contextmanager
def haproxy(backend_port: int) -> Iterator[Haproxy]:
    """haproxy on a free 127.0.0.1 port, forwarding HTTP to 127.0.0.1:backend_port."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="nodetap-haproxy-") as tmp:
        cfg = Path(tmp) / "haproxy.cfg"
        cfg.write_text(CONFIG.format(port=port, backend_port=backend_port))
        proc = subprocess.Popen(
            ["haproxy", "-db", "-f", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        try:
            wait_for_port("127.0.0.1", port)
            yield Haproxy(port, proc)
        finally:
            proc.kill()
            proc.wait()
