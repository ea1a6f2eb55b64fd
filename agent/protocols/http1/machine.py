"""One direction's state machine: bytes in, the messages they completed out.

``Parser`` is the base of ``RequestParser`` and ``ResponseParser``: its public side (``feed``,
``gap``, ``close``), the hand-over to the llhttp fast path (fastpath.py) for chunks of whole
messages, and the loop that runs the states (state.py) over a buffer, calling the readers of
heads (head.py) and bodies (body.py) and the recovery from bad input (recovery.py).
"""

from __future__ import annotations

from agent.protocols.http1.errors import InvalidBytes
from agent.protocols.http1.recovery import Recovery
from agent.protocols.http1.state import (
    BODY,
    CHUNK_CRLF,
    CHUNK_DATA,
    CHUNK_SCAN,
    CHUNK_SIZE,
    CLOSE,
    DEAD,
    HELD,
    IDLE,
    NO_MARKS,
    PEEK,
    SCAN,
    SPENT,
    TRAILERS,
    M,
)
from agent.protocols.http1.syntax import MAX_HEADER_BYTES

HELD_MAX = 1 << 20  # bytes kept after an upgrade request while its answer is awaited
FAST_BACKOFF = 32  # after two chunks in a row the fast path could not take, skip it this often


class Parser(Recovery[M]):
    """Framing shared by both directions; subclasses parse the start line and decide bodies.

    ``max_body``: bodies longer are cut (flag "truncated"; ``body_size`` counts every byte).
    ``resync``: the stream may begin mid-message; bytes are skipped up to a start line.
    ``raise_errors``: raise ParseError instead of flagging and resynchronising.
    ``stats``: counters to add to (a stitcher shares one between its two parsers).
    ``fast``: use the llhttp fast path where it can serve (results are the same).
    """

    @property
    def failed(self) -> bool:
        """The stream is not HTTP/1.x: its first bytes did not parse (or resync found nothing)."""
        return self._failed

    @property
    def skipped_at_start(self) -> int:
        """Bytes skipped before the first message (resync mode: the stream began mid-message)."""
        return self._skipped_start

    @property
    def upgraded(self) -> bool:
        """The connection switched protocols; later bytes are ignored."""
        return self._upgraded

    @property
    def in_message(self) -> bool:
        """A message has started and is not complete yet."""
        return self._msg is not None or (self._state == IDLE and bool(self._rest.strip(b"\r\n")))

    def feed(self, data: bytes | bytearray | memoryview, ts_ns: int) -> list[M]:
        """Parse the next bytes of the stream; return the messages they completed."""
        return [m for m, _ in self._feed(data, ts_ns)]

    def gap(self, nbytes: int, ts_ns: int) -> list[M]:
        """``nbytes`` of the stream are missing here; return messages this ends."""
        return [m for m, _ in self._gap(nbytes, ts_ns)]

    def close(self, ts_ns: int) -> list[M]:
        """The stream ended: finish a close-delimited body, return a cut-short message."""
        return [m for m, _ in self._close(ts_ns)]

    def _feed(self, data: bytes | bytearray | memoryview, ts_ns: int) -> list[tuple[M, int]]:
        """Parse ``data``; return (message, link) pairs it completed (link: see _link)."""
        out: list[tuple[M, int]] = []
        self._out = out
        state = self._state
        if state in (HELD, DEAD):
            if state == HELD and data:
                self._hold(bytes(data), ts_ns)
            return out
        if type(data) is not bytes:
            data = bytes(data)
        if not data:
            return out
        if state == IDLE and self._fast is not None and not self._rest and self._fast_ok():
            if self._fast_skip:
                self._fast_skip -= 1
            else:
                got = self._fast.run(data, ts_ns)
                if got is not None and self._takes(got):  # type: ignore[arg-type]
                    self._fast_misses = 0
                    self._seen = True
                    self._closing = not self._fast.keep_alive
                    self.stats.messages += len(got)
                    self.stats.fast_chunks += 1
                    self.stats.truncated += self._fast.truncated
                    self._accept(got)  # type: ignore[arg-type]
                    self._fast.release()
                    self._out = SPENT  # idle connections keep no messages alive
                    return out
                if got is not None:
                    self._fast.discard()
                self._fast_misses += 1
                if self._fast_misses >= 2:
                    self._fast_misses = 0
                    self._fast_skip = FAST_BACKOFF
        self._ts = ts_ns
        rest = self._rest
        if rest:
            self._marks = [*self._rest_marks, (len(rest), ts_ns)]
            buf = rest + data
        else:
            self._marks = NO_MARKS
            buf = data
        pos = 0
        while True:
            try:
                pos = self._run(buf, pos)
                break
            except InvalidBytes as e:
                pos = self._on_error(buf, e)
        if pos >= len(buf):
            if rest:
                self._rest = b""
                self._rest_marks = []
        else:
            self._keep(buf, pos)
        self._out = SPENT  # idle connections keep no messages alive
        return out

    def _fast_ok(self) -> bool:
        """Whether the next chunk may go to llhttp (nothing ahead needs byte offsets)."""
        return not self._closing and not self._gap_next

    def _takes(self, msgs: list[M]) -> bool:
        """Whether the fast path's reading of a chunk stands (else own framing reads it)."""
        return True

    def _accept(self, msgs: list[M]) -> None:
        """Messages the fast path parsed from a whole chunk (subclass: side effects)."""
        raise NotImplementedError

    def _hold(self, data: bytes, ts: int) -> None:
        """Keep bytes that follow an upgrade request until its answer comes (bounded)."""
        if self._held_bytes + len(data) > HELD_MAX:
            self._held.append((None, ts, len(data)))  # too much: a gap if parsed later
        else:
            self._held.append((data, ts, len(data)))
            self._held_bytes += len(data)

    def _keep(self, buf: bytes, pos: int) -> None:
        """Keep ``buf[pos:]`` (a partial line or header block) for the next chunk."""
        self._rest = buf[pos:]
        marks = self._marks
        if not marks:
            self._rest_marks = [(0, self._ts)]
        else:
            kept = [(0, self._ts_at(pos))]
            kept.extend((off - pos, ts) for off, ts in marks if off > pos)
            self._rest_marks = kept

    def _run(self, buf: bytes, pos: int) -> int:
        n = len(buf)
        while pos < n:
            state = self._state
            if state == IDLE:
                c = buf[pos]
                if c == 13 or c == 10:  # empty lines between messages are tolerated
                    pos += 1
                    continue
                if self._closing:
                    raise InvalidBytes("data after Connection: close", pos)
                end = buf.find(b"\r\n\r\n", pos)
                if end < 0 or end - pos > MAX_HEADER_BYTES:
                    if n - pos > MAX_HEADER_BYTES:
                        pos = self._head_too_large(buf, pos)
                        continue
                    self._check_partial(buf, pos)
                    break
                pos = self._head(buf, pos, end)
            elif state in (BODY, CHUNK_DATA):
                take = self._rem
                if take >= n - pos:
                    take = n - pos
                    self._body(buf[pos:] if pos else buf)
                else:
                    self._body(buf[pos : pos + take])
                pos += take
                self._rem -= take
                if self._rem == 0:
                    if state == BODY:
                        self._complete()
                    else:
                        self._state = CHUNK_CRLF
            elif state == CHUNK_SIZE:
                pos = self._chunks(buf, pos)
                if self._state == CHUNK_SIZE:
                    break  # need more bytes for the next chunk-size line
            elif state == CHUNK_CRLF:
                if n - pos < 2:
                    if buf[pos] != 13:
                        raise InvalidBytes("expected CRLF after chunk data", pos)
                    break
                if buf[pos] != 13 or buf[pos + 1] != 10:
                    raise InvalidBytes("expected CRLF after chunk data", pos)
                pos += 2
                self._state = CHUNK_SIZE
            elif state == TRAILERS:
                if n - pos < 2:
                    break
                if buf[pos] == 13 and buf[pos + 1] == 10:
                    pos += 2
                    self._complete()
                    continue
                end = buf.find(b"\r\n\r\n", pos)
                if end < 0:
                    if n - pos > MAX_HEADER_BYTES:
                        raise InvalidBytes("trailer block too large", pos)
                    break
                msg = self._msg
                assert msg is not None
                msg.trailers = self._fields(buf[pos : end + 2].decode("latin-1"), 0, pos)
                pos = end + 4
                self._complete()
            elif state == CLOSE:
                self._body(buf[pos:] if pos else buf)
                self._last_ts = self._ts
                pos = n
            elif state == PEEK:
                if buf.startswith(b"HTTP/1.", pos) or (
                    n - pos < 7 and b"HTTP/1.".startswith(buf[pos:])
                ):
                    self._complete(self._last_ts)  # a status line: no body (a HEAD answer)
                else:
                    self._state, self._rem = self._peek_next
            elif state == SCAN:
                found = self._scan(buf, pos)
                if found < 0:
                    return self._scan_keep(buf, pos)
                pos = found
            elif state == CHUNK_SCAN:
                found = self._chunk_scan(buf, pos)
                if found < 0:
                    return self._chunk_scan_keep(buf, pos)
                pos = found
            elif state == HELD:
                self._hold(buf[pos:], self._ts_at(pos))
                pos = n
            else:  # DEAD
                pos = n
        return pos
