"""Requests: the request line, how a request's body is framed, and protocol switches asked.

``RequestParser`` tells the response side each request's method as soon as its head is
known (``on_head``), and holds the bytes after a request that asks to switch protocols
(Upgrade, CONNECT) until the answer says whether the switch happened.
"""

from __future__ import annotations

from collections.abc import Callable

from agent.protocols.http1.errors import InvalidBytes
from agent.protocols.http1.machine import Parser
from agent.protocols.http1.state import BODY, CHUNK_SIZE, DEAD, HELD, IDLE
from agent.protocols.http1.stats import Http1Stats
from agent.protocols.http1.syntax import REQ_LINE, TCHAR, VERSION
from agent.protocols.http1.types import HttpRequest


class RequestParser(Parser[HttpRequest]):
    """Requests of one connection, in order.

    ``on_head(method, asks_upgrade, start_ts_ns)`` (optional) is called when a request's header
    block is complete, before its body: the response parser must know the method (HEAD,
    CONNECT) before the request ends (100-continue). After a request that asks to switch
    protocols (Upgrade, CONNECT) the parser holds later bytes until ``resume()`` (the response
    refused) or ``stop()`` (it switched).
    """

    _is_request = True

    def __init__(
        self,
        max_body: int = 1 << 20,
        resync: bool = False,
        *,
        raise_errors: bool = False,
        stats: Http1Stats | None = None,
        on_head: Callable[[str, bool, int], None] | None = None,
        fast: bool = True,
    ) -> None:
        super().__init__(max_body, resync, raise_errors=raise_errors, stats=stats, fast=fast)
        self._on_head = on_head
        self._announced = False
        self._upgrade_req = False

    @property
    def upgrade_pending(self) -> bool:
        """A request asked to switch protocols; later bytes wait for ``resume()``/``stop()``."""
        return self._state == HELD

    def _start_line(self, text: str, pos: int) -> tuple[HttpRequest, int]:
        m = REQ_LINE.match(text)
        if m is None:
            raise InvalidBytes("invalid request line", pos)
        self._announced = False
        method, url, minor = m.groups()
        return HttpRequest(method, url, VERSION[minor], [], b"", 0), m.end()

    def _accept(self, msgs: list[HttpRequest]) -> None:
        on_head = self._on_head
        out = self._out
        for m in msgs:
            if on_head is not None:
                on_head(m.method, False, m.start_ts_ns)  # llhttp stops on upgrades: none here
            out.append((m, 0))

    def _check_prefix(self, line: bytes, pos: int) -> None:
        parts = line.rstrip(b"\r").split(b" ")
        method = parts[0]
        if method.translate(None, TCHAR) or len(method) > 32:
            raise InvalidBytes("invalid method", pos)
        if len(parts) > 3 or (
            len(parts) == 3
            and not (b"HTTP/1.1".startswith(parts[2]) or b"HTTP/1.0".startswith(parts[2]))
        ):
            raise InvalidBytes("invalid request line", pos)

    def _framing(self, msg: HttpRequest, text: str, hs: int, pos: int) -> None:
        tunnel = msg.method == "CONNECT" or msg.method == "PRI"
        try:
            length, chunked, te, keep_alive, asks = self._semantics(text, hs, msg.version, pos)
        except InvalidBytes:
            self._announce(msg, tunnel)
            raise
        upgrade = tunnel or asks
        self._announce(msg, upgrade)
        if te and not chunked:
            raise InvalidBytes("request has invalid Transfer-Encoding", pos)
        if upgrade:
            self._upgrade_req = self._post = True
        self._closing = not keep_alive
        if tunnel:  # the tunnel starts after the header block, whatever the headers say
            self._complete()
        elif chunked:
            self._state = CHUNK_SIZE
        elif length:
            self._rem = length
            self._state = BODY
        else:
            self._complete()

    def _announce(self, msg: HttpRequest, upgrade: bool = False) -> None:
        if self._on_head is not None and not self._announced:
            self._announced = True
            self._on_head(msg.method, upgrade, msg.start_ts_ns)

    def _head_error(self, msg: HttpRequest) -> None:
        self._announce(msg)

    def _after_complete(self) -> None:
        self._post = False
        if self._upgrade_req:
            self._upgrade_req = False
            self._state = HELD

    def resume(self) -> list[HttpRequest]:
        """The upgrade was refused: parse the held bytes as HTTP again."""
        out: list[tuple[HttpRequest, int]] = []
        if self._state != HELD:
            # answered (and refused) before the request ended, as a server that replies
            # before reading the whole body does: do not hold what follows it
            self._upgrade_req = False
            return []
        self._state = IDLE
        held, self._held = self._held, []
        self._held_bytes = 0
        for data, ts, n in held:
            if data is None:
                out.extend(self._gap(n, ts))
            else:
                out.extend(self._feed(data, ts))
        return [m for m, _ in out]

    def stop(self) -> None:
        """The connection switched protocols: ignore the rest."""
        self._upgraded = True
        self._state = DEAD
        self._held = []
        self._rest = b""
