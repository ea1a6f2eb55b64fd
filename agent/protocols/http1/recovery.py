"""When the stream is not clean: parse errors, gaps, resynchronisation, and its end.

A parse error flags the message it hit ("parse_error", "incomplete") and sends the parser
looking for the next start line (or fails the stream when its first message was not HTTP);
a gap (bytes lost by the capture) keeps sync where the framing allows it and resynchronises
otherwise; close finishes a close-delimited body or returns a message cut short.
"""

from __future__ import annotations

import contextlib

from agent.protocols.http1.body import BodyReader
from agent.protocols.http1.chunk_resync import FOUND, MORE, find_chunk_boundary
from agent.protocols.http1.errors import InvalidBytes, ParseError
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
    PEEK,
    SCAN,
    SPENT,
    M,
)
from agent.protocols.http1.syntax import MAX_HEADER_BYTES, MAX_START_LINE, REQ_START, RESP_START

RESYNC_FAIL_BYTES = 1 << 20  # resync mode: no message start within this many bytes -> failed


class Recovery(BodyReader[M]):
    """Parse errors, gaps, resynchronisation and the end of the stream."""

    def _on_error(self, buf: bytes, e: InvalidBytes) -> int:
        """Record a parse error at ``e.pos``; return where to continue in ``buf``."""
        self.stats.parse_errors += 1
        self.last_error = e.reason
        msg = self._msg
        if msg is not None:
            msg.flags.update(("parse_error", "incomplete"))
            self.stats.incomplete += 1
            self._finish_cut(msg)
        if self.raise_errors:
            done = [m for m, _ in self._out]
            self._state = DEAD
            self._failed = True
            raise ParseError(e.reason, done)
        if not self._seen and not self.resync:
            self._fail()
            return len(buf)
        self._state = SCAN
        self._after_gap = True  # what the skipped bytes held is lost to the pairing too
        return e.pos + 1 if e.pos < len(buf) else len(buf)

    def _fail(self) -> None:
        self._failed = True
        self._state = DEAD
        self._rest = b""
        self._rest_marks = []

    def _scan(self, buf: bytes, pos: int) -> int:
        """Find the next start line at or after ``pos``; switch to IDLE there. -1: none yet."""
        pat = REQ_START if self._is_request else RESP_START
        m = pat.search(buf, pos)
        if m is None:
            return -1
        at = m.start()
        skipped = at - pos
        if skipped or self._seen:
            self.stats.resyncs += 1
        self.stats.skipped_bytes += skipped
        if not self._seen:
            self._skipped_start += skipped
        self._state = IDLE
        self._closing = False
        return at

    def _scan_keep(self, buf: bytes, pos: int) -> int:
        """No start line in ``buf[pos:]``: skip all but a tail that may begin one.

        A start line not yet complete holds no LF, so it begins after the last LF.
        """
        n = len(buf)
        keep = max(buf.rfind(b"\n", pos, n) + 1, pos, n - MAX_START_LINE)
        self.stats.skipped_bytes += keep - pos
        if not self._seen:
            self._skipped_start += keep - pos
            if self.resync and self._skipped_start > RESYNC_FAIL_BYTES:
                self._fail()
                return n
        return keep

    def _chunk_scan(self, buf: bytes, pos: int) -> int:
        """After a gap in a chunked body: framing resumes at the first chunk-size line whose
        framing holds (chunk_resync.py), unless a start line comes first (then the message
        ends cut). Every byte skipped until then counts in ``body_size`` (the chunk framing
        among them too: an upper bound, flagged "gap"). Return where to continue, -1:
        neither yet (``_chunk_keep``: where a candidate waiting for bytes begins)."""
        m = (REQ_START if self._is_request else RESP_START).search(buf, pos)
        limit = m.start() if m is not None else len(buf)
        kind, at = find_chunk_boundary(buf, pos, limit, self._chunk_at_hole)
        self._chunk_at_hole = kind == MORE and at == pos and self._chunk_at_hole
        msg = self._msg
        assert msg is not None
        if kind == FOUND:
            self.stats.skipped_bytes += at - pos
            self.stats.chunk_resyncs += 1
            msg.body_size += at - pos
            self._state = CHUNK_SIZE
            return at
        if kind == MORE:
            self._chunk_keep = at if self._chunk_at_hole else at - 2
            return -1
        self._chunk_keep = -1
        if m is None:
            return -1
        self.stats.skipped_bytes += m.start() - pos
        msg.body_size += m.start() - pos
        self._finish_cut(msg)
        self._state = IDLE
        self._closing = False
        return m.start()

    def _chunk_scan_keep(self, buf: bytes, pos: int) -> int:
        """Nothing proven in ``buf[pos:]``: skip all but a candidate waiting for bytes, or a
        tail that may begin one (from the last CRLF, or a CR at the end) or a start line."""
        n = len(buf)
        keep = self._chunk_keep
        if keep < pos:
            lf = buf.rfind(b"\n", pos, n)
            if lf > pos and buf[lf - 1] == 13:
                lf -= 1
            if buf.endswith(b"\r"):
                lf = max(lf, n - 1)
            keep = max(lf, pos, n - MAX_START_LINE)
        self._chunk_keep = -1
        self.stats.skipped_bytes += keep - pos
        if self._msg is not None:
            self._msg.body_size += keep - pos
        return keep

    def _gap(self, nbytes: int, ts_ns: int) -> list[tuple[M, int]]:
        try:
            return self._gap_in(nbytes, ts_ns)
        finally:
            self._out = SPENT

    def _gap_in(self, nbytes: int, ts_ns: int) -> list[tuple[M, int]]:
        out: list[tuple[M, int]] = []
        self._out = out
        if nbytes <= 0:
            return out
        self.stats.gaps += 1
        self.stats.gap_bytes += nbytes
        self._ts = ts_ns
        self._marks = self._rest_marks
        state = self._state
        if state == DEAD:
            return out
        if state == HELD:
            self._held.append((None, ts_ns, nbytes))
            return out
        msg = self._msg
        if msg is not None and not self._rest and state in (BODY, CHUNK_DATA, CLOSE):
            msg.flags.add("gap")
            self._room = -1  # bytes after the hole are not stored: the body would be wrong
            if state == CLOSE:
                msg.body_size += nbytes
                return out
            if nbytes < self._rem:
                self._rem -= nbytes
                msg.body_size += nbytes
                return out
            if state == CHUNK_DATA and nbytes == self._rem:
                msg.body_size += nbytes
                self._rem = 0
                self._state = CHUNK_CRLF  # the hole ended with the chunk: still in sync
                return out
            if state == BODY:
                lost = nbytes - self._rem
                msg.body_size += self._rem
                self._rem = 0
                self._complete()
                if not lost:
                    return out
                self._gap_next = self._after_gap = True
                self._enter_scan()
                return out
        if msg is not None and state in (CHUNK_DATA, CHUNK_SIZE, CHUNK_CRLF, CHUNK_SCAN):
            # the chunk framing is lost: find it again (or the next start line); the hole
            # and the bytes kept before it count in body_size (an upper bound: the framing
            # they held is counted too)
            msg.flags.add("gap")
            self._room = -1
            self._after_gap = True
            msg.body_size += nbytes + (len(self._rest) if state == CHUNK_SCAN else 0)
            self._rest = b""
            self._rest_marks = []
            self._state = CHUNK_SCAN
            self._chunk_at_hole = True
            return out
        if msg is not None:
            # bytes of this message were lost: "gap" (not "incomplete", which says that
            # the connection ended early)
            msg.flags.add("gap")
            self._finish_cut(msg)
        elif state == IDLE and self._rest.strip(b"\r\n"):
            self._partial_head(self._rest, "gap")
        else:
            self._gap_next = True
        self._after_gap = True
        self._enter_scan()
        return out

    def _enter_scan(self) -> None:
        self._rest = b""
        self._rest_marks = []
        self._state = SCAN

    def _close(self, ts_ns: int) -> list[tuple[M, int]]:
        try:
            return self._close_in(ts_ns)
        finally:
            self._out = SPENT

    def _close_in(self, ts_ns: int) -> list[tuple[M, int]]:
        out: list[tuple[M, int]] = []
        self._out = out
        state = self._state
        self._ts = ts_ns
        self._marks = self._rest_marks
        if state in (CLOSE, PEEK):
            self._complete(self._last_ts)
        elif self._msg is not None:
            msg = self._msg
            if state != CHUNK_SCAN:  # else: its framing was lost, its end is unknown ("gap")
                msg.flags.add("incomplete")
                self.stats.incomplete += 1
            self._finish_cut(msg)
        elif state == IDLE and self._rest.strip(b"\r\n"):
            self._partial_head(self._rest)
        self._rest = b""
        self._rest_marks = []
        self._state = DEAD
        self._held = []
        return out

    def _partial_head(self, rest: bytes, flag: str = "", base: int = 0) -> None:
        """A header block cut short (close, gap: ``flag`` "gap"; too large: "truncated"):
        return what its start line says. ``base``: where ``rest`` begins in the buffer the
        marks describe."""
        start = len(rest) - len(rest.lstrip(b"\r\n"))
        eol = rest.find(b"\r\n", start)
        line = rest[start:eol] if eol >= 0 else rest[start:]
        try:
            msg, _ = self._start_line(line.decode("latin-1") + "\r\n", 0)
        except InvalidBytes:
            self.stats.skipped_bytes += len(rest)
            return
        last = rest.rfind(b"\r\n")
        if eol >= 0 and last > eol:  # the header lines that came whole
            with contextlib.suppress(InvalidBytes):
                msg.headers = self._fields(rest[eol + 2 : last + 2].decode("latin-1"), 0, 0)
        msg.start_ts_ns = self._ts_at(base + start)
        msg.end_ts_ns = self._ts_at(base + len(rest) - 1)
        self._head_error(msg)
        if flag:
            msg.flags.add(flag)
        else:
            msg.flags.add("incomplete")
            self.stats.incomplete += 1
        if self._gap_next and flag != "truncated":
            msg.flags.add("gap")
            self._gap_next = False
        self._emit(msg)

    def _head_too_large(self, buf: bytes, pos: int) -> int:
        """A header block longer than MAX_HEADER_BYTES at ``pos``: if its start line is
        one, return that message flagged "truncated" with the header lines that fit, and
        look for the next message; return where to continue."""
        head = buf[pos : pos + MAX_HEADER_BYTES]
        eol = head.find(b"\r\n")
        line = head[:eol] if eol >= 0 else b""
        try:
            self._start_line(line.decode("latin-1") + "\r\n", pos)
        except InvalidBytes:
            raise InvalidBytes("header block too large", pos) from None
        self.stats.parse_errors += 1
        self.last_error = "header block too large"
        self._partial_head(head, "truncated", pos)
        self._seen = True
        self._state = SCAN
        return pos + 1
