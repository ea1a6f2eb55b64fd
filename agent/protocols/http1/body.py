"""Message bodies: Content-Length bytes, chunks (with extensions and trailers), the body cut
to ``max_body``, and the end of a message, whole or cut short.

``BodyReader`` holds what the state machine (machine.py) calls inside a body; the framing a
body gets is decided from its head (request.py, response.py).
"""

from __future__ import annotations

from agent.protocols.http1.errors import InvalidBytes
from agent.protocols.http1.head import HeadReader
from agent.protocols.http1.state import (
    BODY,
    CHUNK_CRLF,
    CHUNK_DATA,
    CLOSE,
    IDLE,
    SPENT,
    TRAILERS,
    M,
)
from agent.protocols.http1.syntax import CHUNK_EXT, HEX, MAX_CHUNK_LINE


class BodyReader(HeadReader[M]):
    """Collects body bytes and completes messages."""

    def _body(self, piece: bytes) -> None:
        ln = len(piece)
        msg = self._msg
        assert msg is not None
        msg.body_size += ln
        room = self._room
        if ln <= room:
            self._parts.append(piece)
            self._room = room - ln
        elif room >= 0:
            if room:
                self._parts.append(piece[:room])
            self._room = 0
            if "truncated" not in msg.flags:
                msg.flags.add("truncated")
                self.stats.truncated += 1

    def _chunks(self, buf: bytes, pos: int) -> int:
        """Decode whole chunks (size line, data, CRLF) from ``pos`` in one loop.

        Returns where it stopped; leaves CHUNK_SIZE when a chunk is only partly here (the
        state machine goes on) or the last chunk came (trailers next).
        """
        n = len(buf)
        find = buf.find
        msg = self._msg
        assert msg is not None
        parts = self._parts
        while True:
            eol = find(b"\r\n", pos)
            if eol < 0:
                if n - pos > MAX_CHUNK_LINE:
                    raise InvalidBytes("chunk size line too long", pos)
                return pos
            line = buf[pos:eol]
            if len(line) > 16 or line.translate(None, HEX) or not line:
                size = self._chunk_size(line, pos)  # extensions, or an error
            else:
                size = int(line, 16)
            start = eol + 2
            if not size:
                self._state = TRAILERS
                return start
            end = start + size
            if end + 2 > n or buf[end] != 13 or buf[end + 1] != 10 or self._room < size:
                self._rem = size
                self._state = CHUNK_DATA
                return start
            parts.append(buf[start:end])
            self._room -= size
            msg.body_size += size
            pos = end + 2

    @staticmethod
    def _chunk_size(line: bytes, pos: int) -> int:
        """The size on a chunk-size line that has extensions (or is invalid)."""
        size, semi, ext = line.partition(b";")
        if not size or size.translate(None, HEX) or len(size) > 16:
            raise InvalidBytes("invalid character in chunk size", pos)
        if semi and (not ext or ext[-1] == 59 or CHUNK_EXT.fullmatch(ext) is None):
            raise InvalidBytes("invalid chunk extensions", pos)
        return int(size, 16)

    def _complete(self, end_ts: int | None = None) -> None:
        msg = self._msg
        assert msg is not None
        parts = self._parts
        if parts:
            msg.body = parts[0] if len(parts) == 1 else b"".join(parts)
            self._parts = []
        msg.end_ts_ns = self._ts if end_ts is None else end_ts
        self._msg = None
        self._state = IDLE
        self.stats.messages += 1
        self._out.append((msg, self._link))
        self._link = 0
        self._popped = False
        if self._post:
            self._after_complete()

    def _after_complete(self) -> None:
        """A message that changes the connection (upgrade) completed (subclass hook)."""

    def _skip(self, nbytes: int, ts_ns: int) -> list[tuple[M, int]] | None:
        """``nbytes`` of a body the capture did not copy on purpose (past its copy bound,
        agent/copy_bound.py): counted in ``body_size``, the body kept so far (a prefix)
        flagged ``truncated``. None when they are not all inside the current body: the
        caller treats them as a gap."""
        msg = self._msg
        state = self._state
        if msg is None or self._rest or nbytes <= 0 or state not in (BODY, CHUNK_DATA, CLOSE):
            return None
        if state != CLOSE and nbytes > self._rem:
            return None
        out: list[tuple[M, int]] = []
        self._out = out
        try:
            self._ts = ts_ns
            self._marks = self._rest_marks
            msg.body_size += nbytes
            if self._room >= 0:  # -1: already cut by a gap, which says more
                self._room = 0
                if "truncated" not in msg.flags:
                    msg.flags.add("truncated")
                    self.stats.truncated += 1
            if state == CLOSE:
                return out
            self._rem -= nbytes
            if not self._rem:
                if state == BODY:
                    self._complete()
                else:
                    self._state = CHUNK_CRLF
            return out
        finally:
            self._out = SPENT

    def _finish_cut(self, msg: M) -> None:
        parts = self._parts
        msg.body = parts[0] if len(parts) == 1 else b"".join(parts)
        msg.end_ts_ns = self._last_ts
        self._msg = None
        self._parts = []
        self._emit(msg)
