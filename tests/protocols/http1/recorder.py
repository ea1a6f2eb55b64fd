"""A loopback TCP relay that records both directions of one connection, as a socket saw them."""

from __future__ import annotations

import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType

from agent.protocols.http1 import Http1Stitcher
from agent.protocols.http1.types import HttpExchange


@dataclass
class Recording:
    """Chunks in the order the relay read them: ("req" | "resp", bytes, monotonic ns)."""

    chunks: list[tuple[str, bytes, int]] = field(default_factory=list)
    closed_ns: int = 0

    def stitch(self, **kwargs: object) -> tuple[Http1Stitcher, list[HttpExchange]]:
        st = Http1Stitcher(**kwargs)  # type: ignore[arg-type]
        out: list[HttpExchange] = []
        for direction, data, ts in self.chunks:
            if direction == "req":
                out += st.feed_request_bytes(data, ts)
            else:
                out += st.feed_response_bytes(data, ts)
        out += st.close(self.closed_ns)
        return st, out

    def raw(self, direction: str) -> bytes:
        return b"".join(d for k, d, _ in self.chunks if k == direction)


class RecordingRelay:
    """Accepts one client connection on a free loopback port and relays it to ``upstream``."""

    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.recording = Recording()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._error: BaseException | None = None

    def __enter__(self) -> RecordingRelay:
        self._thread.start()
        return self

    def __exit__(
        self,
        et: type[BaseException] | None,
        ev: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.wait()

    def wait(self, timeout: float = 30.0) -> Recording:
        """Wait until both sides closed (the client must have closed its socket)."""
        self._thread.join(timeout)
        self.listener.close()
        if self._thread.is_alive():
            raise TimeoutError("relay still running")
        if self._error is not None:
            raise self._error
        return self.recording

    def _run(self) -> None:
        try:
            self.listener.settimeout(30)
            client, _ = self.listener.accept()
            server = socket.create_connection(self.upstream, timeout=30)
            self._relay(client, server)
        except BaseException as e:  # reported by wait()
            self._error = e

    def _relay(self, client: socket.socket, server: socket.socket) -> None:
        peer = {client: server, server: client}
        name = {client: "req", server: "resp"}
        open_ = {client, server}
        sel = selectors.DefaultSelector()
        for s in open_:
            sel.register(s, selectors.EVENT_READ)
        deadline = time.monotonic() + 60
        try:
            while open_ and time.monotonic() < deadline:
                for key, _ in sel.select(timeout=1):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    data = sock.recv(65536)
                    if not data:
                        sel.unregister(sock)
                        open_.discard(sock)
                        peer[sock].shutdown(socket.SHUT_WR)
                        continue
                    self.recording.chunks.append((name[sock], data, time.monotonic_ns()))
                    peer[sock].sendall(data)
            self.recording.closed_ns = time.monotonic_ns()
        finally:
            sel.close()
            client.close()
            server.close()
