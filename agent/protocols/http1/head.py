"""Message heads: the start line and header block, and what the headers say about the body.

``HeadReader`` parses a complete head in one pass over the block decoded as latin-1, checks a
head still arriving (so that a stream that is not HTTP fails early), and reads the framing
headers (Content-Length, Transfer-Encoding, Connection, Upgrade). Which framing a message
then gets is for each direction to decide (request.py, response.py: ``_framing``).
"""

from __future__ import annotations

from agent.protocols.http1.errors import InvalidBytes
from agent.protocols.http1.state import M, ParserState
from agent.protocols.http1.syntax import FIELD
from agent.protocols.http1.types import Headers

# (content_length, chunked, transfer_encoding_present, keep_alive, asks_upgrade)
Framing = tuple[int | None, bool, bool, bool, bool]


def token_list(value: str) -> list[str]:
    """A comma-separated header value as lower-case tokens."""
    return [t.strip(" \t").lower() for t in value.split(",")]


class HeadReader(ParserState[M]):
    """Reads start lines and header blocks; subclasses parse the start line and frame bodies."""

    def _head(self, buf: bytes, start: int, end: int) -> int:
        """Parse the start line and header block ``buf[start:end]``; set up the body."""
        text = buf[start : end + 2].decode("latin-1")  # with the last line's CRLF
        msg, hs = self._start_line(text, start)
        self._seen = True
        msg.start_ts_ns = self._ts_at(start) if self._marks else self._ts
        if self._gap_next:
            msg.flags.add("gap")
            self._gap_next = False
        self._msg = msg
        self._parts = []
        self._room = self.max_body
        self._last_ts = self._ts
        self._buf = buf  # for a look past the header block (ResponseParser._framing)
        self._body_at = end + 4
        try:
            if hs < len(text):
                msg.headers = self._fields(text, hs, start)
            self._framing(msg, text, hs, start)
        except InvalidBytes as e:
            self._head_error(msg)
            e.pos = end + 3  # look for the next start line after this header block
            raise
        finally:
            self._buf = b""
        return end + 4

    @staticmethod
    def _fields(text: str, start: int, pos: int) -> Headers:
        """Header (or trailer) lines of ``text`` from ``start``, each ending in CRLF."""
        headers: Headers = FIELD.findall(text, start)
        if len(headers) != text.count("\n", start):
            raise InvalidBytes("invalid header line", pos)
        return headers

    def _start_line(self, text: str, pos: int) -> tuple[M, int]:
        """The message its start line (at the beginning of ``text``, with CRLF) describes,
        and the offset after that line."""
        raise NotImplementedError

    def _check_prefix(self, line: bytes, pos: int) -> None:
        """Reject a partial start line whose first bytes cannot start a message (not HTTP)."""
        raise NotImplementedError

    def _framing(self, msg: M, text: str, hs: int, pos: int) -> None:
        """Decide how the body of ``msg`` is delimited (``text[hs:]`` holds its headers)."""
        raise NotImplementedError

    def _head_error(self, msg: M) -> None:
        """The header block of ``msg`` is invalid (hook for the request parser)."""

    @staticmethod
    def _semantics(text: str, hs: int, version: str, pos: int) -> Framing:
        """What the headers in ``text[hs:]`` say about the body and the connection:
        (content_length, chunked, transfer_encoding_present, keep_alive, asks_upgrade)."""
        low = text.lower()
        start = hs - 1  # the LF before the first header line
        cl_at = low.find("\ncontent-length:", start)
        te_at = low.find("\ntransfer-encoding:", start)
        conn_at = low.find("\nconnection:", start)
        default_keep_alive = version != "HTTP/1.0"
        length: int | None = None
        if cl_at >= 0:
            v = text[cl_at + 16 : text.index("\r", cl_at + 16)].strip(" \t")
            if not (v.isdigit() and v.isascii()):
                raise InvalidBytes("invalid character in Content-Length", pos)
            if len(v) > 18:
                raise InvalidBytes("Content-Length overflow", pos)
            length = int(v)
            if low.find("\ncontent-length:", cl_at + 16) >= 0:
                raise InvalidBytes("duplicate Content-Length", pos)
        chunked = te = False
        if te_at >= 0:
            if length is not None:
                raise InvalidBytes("Transfer-Encoding can't be present with Content-Length", pos)
            te = True
            while te_at >= 0:
                codings = token_list(low[te_at + 19 : low.index("\r", te_at + 19)])
                # chunked must be the last coding, applied once
                chunked = not chunked and codings[-1] == "chunked" and "chunked" not in codings[:-1]
                te_at = low.find("\ntransfer-encoding:", te_at + 19)
        if conn_at < 0:
            return length, chunked, te, default_keep_alive, False
        v = low[conn_at + 12 : low.index("\r", conn_at + 12)].strip(" \t")
        conn = token_list(v) if "," in v else [v]
        conn_at = low.find("\nconnection:", conn_at + 12)
        while conn_at >= 0:
            conn += token_list(low[conn_at + 12 : low.index("\r", conn_at + 12)])
            conn_at = low.find("\nconnection:", conn_at + 12)
        if "close" in conn:
            keep_alive = False
        elif "keep-alive" in conn:
            keep_alive = True
        else:
            keep_alive = default_keep_alive
        asks_upgrade = "upgrade" in conn and low.find("\nupgrade:", start) >= 0
        return length, chunked, te, keep_alive, asks_upgrade

    def _check_partial(self, buf: bytes, pos: int) -> None:
        """A header block not complete yet: reject it now if what came already is invalid.

        Runs only while a header block is split across chunks; stops a non-HTTP stream early.
        """
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            line = buf[pos:]
            if b"\n" in line or b"\r" in line[:-1]:
                raise InvalidBytes("bare CR or LF in start line", pos)
            self._check_prefix(line, pos)
            return
        msg, hs = self._start_line(buf[pos : eol + 2].decode("latin-1"), pos)
        n = len(buf)
        if eol + 2 < n and buf[eol + 2] in (32, 9):
            raise InvalidBytes("unexpected space after start line", pos)
        last = buf.rfind(b"\r\n", eol + 2)
        if last > eol:
            text = buf[pos : last + 2].decode("latin-1")
            self._fields(text, hs, pos)
            self._semantics(text, hs, msg.version, pos)
        tail = buf[(last if last > eol else eol) + 2 :]
        if b"\n" in tail or b"\r" in tail[:-1]:
            raise InvalidBytes("bare CR or LF in header block", pos)
