"""A loopback TCP relay that records both directions of every connection it carries, in
the order the bytes arrived: real peers talk through it, and the recorded byte streams are
what a capture would have seen (tests/core/test_h2_peers.py turns them into ring records).

Bounded: it records at most `max_bytes` per connection and stops with the test.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from dataclasses import dataclass, field


@dataclass
class Recorded:
    """One relayed connection: (side, bytes, monotonic ns) in arrival order, side "req"
    (client to server) or "res"."""

    pieces: list[tuple[str, bytes, int]] = field(default_factory=list)
    closed: bool = False

    def mark_closed(self) -> None:
        self.closed = True

    def side(self, side: str) -> bytes:
        return b"".join(p for s, p, _ in self.pieces if s == side)


class Relay:
    def __init__(self, upstream: tuple[str, int], max_bytes: int = 256 << 20) -> None:
        self.upstream = upstream
        self.max_bytes = max_bytes
        self.conns: list[Recorded] = []
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = int(self._sock.getsockname()[1])
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._open: list[socket.socket] = []
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()
        self._threads.append(t)

    def _accept(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                c, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            u = socket.create_connection(self.upstream)
            for s in (c, u):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            rec = Recorded()
            with self._lock:
                self.conns.append(rec)
                self._open += [c, u]
            done = threading.Barrier(2, action=rec.mark_closed)
            for src, dst, side in ((c, u, "req"), (u, c, "res")):
                t = threading.Thread(
                    target=self._pump, args=(src, dst, side, rec, done), daemon=True
                )
                t.start()
                self._threads.append(t)

    def _pump(
        self,
        src: socket.socket,
        dst: socket.socket,
        side: str,
        rec: Recorded,
        done: threading.Barrier,
    ) -> None:
        total = 0
        while True:
            try:
                b = src.recv(1 << 16)
            except OSError:
                b = b""
            if not b:
                break
            with self._lock:
                if total < self.max_bytes:
                    rec.pieces.append((side, b, time.monotonic_ns()))
                total += len(b)
            try:
                dst.sendall(b)
            except OSError:
                break
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)
        with contextlib.suppress(threading.BrokenBarrierError):
            done.wait(timeout=30)

    def wait_closed(self, timeout: float = 10.0) -> None:
        """Every connection carried so far has ended in both directions."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if all(r.closed for r in self.conns):
                    return
            time.sleep(0.02)
        raise TimeoutError("relayed connections still open")

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        with self._lock:
            for s in self._open:
                with contextlib.suppress(OSError):
                    s.close()
        for t in self._threads:
            t.join(timeout=5)

    def __enter__(self) -> Relay:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
