"""Responses: the status line, which request each answers, and how its body is framed.

``ResponseParser`` skips 1xx interim responses, gives HEAD answers, 204 and 304 no body,
reads to close when nothing else delimits a body, and takes a 101 (or a 2xx to CONNECT) as a
switch of protocols. Requests are answered in order; where bytes were lost, timestamps
decide which request a response answers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from agent.protocols.http1.errors import InvalidBytes
from agent.protocols.http1.machine import Parser
from agent.protocols.http1.state import BODY, CHUNK_SIZE, CLOSE, DEAD, IDLE, PEEK
from agent.protocols.http1.stats import Http1Stats
from agent.protocols.http1.syntax import RESP_LINE, VERSION
from agent.protocols.http1.types import HttpResponse

LOST = ""  # ResponseParser.expect_lost(): the method of a request lost before the capture


class ResponseParser(Parser[HttpResponse]):
    """Responses of one connection, in order. 1xx interim responses are skipped.

    ``expect(method)`` tells it the method of each request, in order, as soon as the request's
    header block is known: HEAD responses have no body, a 2xx to CONNECT switches protocols.
    Responses with no request told (stream started mid-way, a gap) are parsed as answers to
    GET; with ``guess_head=True`` (the stitcher) as answers to HEAD when a status line follows
    their header block at once.
    """

    _is_request = False

    def __init__(
        self,
        max_body: int = 1 << 20,
        resync: bool = False,
        *,
        raise_errors: bool = False,
        stats: Http1Stats | None = None,
        fast: bool = True,
        guess_head: bool = False,
    ) -> None:
        super().__init__(max_body, resync, raise_errors=raise_errors, stats=stats, fast=fast)
        self._methods: deque[tuple[str, bool, int]] = deque()  # (method, asks_upgrade, ts)
        self._special = 0  # HEAD, CONNECT or upgrade requests among _methods
        self.guess_head = guess_head
        self._asked_upgrade = False
        self.on_refused: Callable[[], None] | None = None
        self._method: str | None = None
        self._upgrade_resp = False

    def expect(self, method: str, asks_upgrade: bool = False, start_ts_ns: int = 0) -> None:
        """The next request (in order) used ``method`` (and asked to switch protocols); its
        first byte came at ``start_ts_ns``: a response that began earlier cannot answer it."""
        self._methods.append((method, asks_upgrade, start_ts_ns))
        if asks_upgrade or method == "HEAD" or method == "CONNECT":
            self._special += 1

    def expect_lost(self) -> None:
        """A request was lost before the capture (its tail skipped): its answer may come next.

        If this stream starts cleanly on a status line, its first response answers that lost
        request (an exchange without request); if this stream skips a partial response first,
        that one was the answer and the mark is dropped.
        """
        if self._seen:
            return  # a response came before any request: that was the answer (an orphan)
        self._methods.append((LOST, False, 0))
        self._special += 1  # keeps the fast path away until it is resolved

    def _fast_ok(self) -> bool:
        return (
            not self._special and bool(self._methods) and not self._closing and not self._gap_next
        )

    def _takes(self, msgs: list[HttpResponse]) -> bool:
        # every response answers a waiting request that began no later (else: own framing,
        # which handles answers to requests it did not see)
        methods = self._methods
        n = len(msgs)
        return n <= len(methods) and (n == 0 or methods[n - 1][2] <= msgs[0].start_ts_ns)

    def _accept(self, msgs: list[HttpResponse]) -> None:
        self.stats.interim += self._fast.interim if self._fast is not None else 0
        popleft = self._methods.popleft
        out = self._out
        for m in msgs:
            popleft()
            out.append((m, 0))

    def _start_line(self, text: str, pos: int) -> tuple[HttpResponse, int]:
        m = RESP_LINE.match(text)
        if m is None:
            raise InvalidBytes("invalid status line", pos)
        reason = m.group(3)
        msg = HttpResponse(int(m.group(2)), reason or "", VERSION[m.group(1)], [], b"", 0)
        return msg, m.end()

    def _check_prefix(self, line: bytes, pos: int) -> None:
        if not b"HTTP/1.".startswith(line[:7]):
            raise InvalidBytes("expected HTTP/1.x status line", pos)

    def _framing(self, msg: HttpResponse, text: str, hs: int, pos: int) -> None:
        status = msg.status_code
        if status < 200 and status != 101:
            self.stats.interim += 1
            self._msg = None
            self._state = IDLE
            return
        method = self._answer(msg.start_ts_ns)
        if status == 101 or (method == "CONNECT" and 200 <= status < 300):
            self._semantics(text, hs, msg.version, pos)
            msg.flags.add("upgrade")
            self._upgrade_resp = self._post = True
            self._complete()
            return
        if method == "HEAD" or status == 204 or status == 304:
            self._closing = not self._semantics(text, hs, msg.version, pos)[3]
            self._complete()
            return
        length, chunked, te, keep_alive, _ = self._semantics(text, hs, msg.version, pos)
        self._closing = not keep_alive
        if method is None and self.guess_head and (chunked or length):
            # It answers a request we did not see (lost in a gap or before the capture). If a
            # status line follows at once, that request was a HEAD: this response has no body.
            if self._buf.startswith(b"HTTP/1.", self._body_at):
                self._complete()
                return
            if self._body_at >= len(self._buf):  # nothing after it yet: the next bytes tell
                self._peek_next = (CHUNK_SIZE, 0) if chunked else (BODY, length or 0)
                self._state = PEEK
                return
        if chunked:
            self._state = CHUNK_SIZE
        elif te or length is None:
            self._state = CLOSE
        elif length:
            self._rem = length
            self._state = BODY
        else:
            self._complete()

    def _answer(self, start_ts: int) -> str | None:
        """Take the method of the request this final response answers (None: unknown).

        Requests are answered in order, with two exceptions that timestamps decide: a response
        that began before the oldest waiting request cannot answer it (that request's answer
        is still to come; this one answers a request lost in a gap), and the first response
        after a gap in this stream answers the newest request that began before it (the
        answers of those before it were lost in the gap).
        """
        if self._popped:
            return self._method
        self._popped = True
        methods = self._methods
        if methods and methods[0][0] == LOST:
            methods.popleft()
            self._special -= 1
            if not self._skipped_start:
                self._method = None
                self._link = -1
                return None
        skip = 0
        if self._after_gap:
            self._after_gap = False
            while len(methods) > 1 and methods[1][2] <= start_ts:
                self._drop_method()
                skip += 1
        if methods and methods[0][2] <= start_ts:
            method = self._drop_method()
            self._link = skip
        else:
            method = None
            self._link = -1
        self._method = method
        return method

    def _drop_method(self) -> str:
        method, asked, _ = self._methods.popleft()
        if asked:
            self._asked_upgrade = self._post = True
        if asked or method == "HEAD" or method == "CONNECT":
            self._special -= 1
        return method

    def _head_error(self, msg: HttpResponse) -> None:
        if msg.status_code >= 200 or msg.status_code == 101:
            self._answer(msg.start_ts_ns)

    def _after_complete(self) -> None:
        self._post = False
        if self._upgrade_resp:
            self._upgraded = True
            self._state = DEAD
        elif self._asked_upgrade:
            # An ordinary answer to a request that asked to switch protocols: the request side
            # goes on as HTTP, and must tell its methods before more responses are parsed.
            self._asked_upgrade = False
            if self.on_refused is not None:
                self.on_refused()
