"""Sans-IO HTTP/1.x parsers: the bytes of one direction of a connection in, messages out.

``RequestParser`` and ``ResponseParser`` take bytes with the capture timestamp of the chunk
(``feed(data, ts_ns)``) and return the messages those bytes completed. They know nothing of
sockets, BPF or files. ``Http1Stitcher`` (stitch.py) drives one of each per connection.

Two paths give the same records (tests compare them):

- the fast path (fastpath.py): llhttp via httptools, for a chunk that starts at a message
  boundary and holds whole messages, when nothing ahead needs byte offsets; the usual case
  of keep-alive traffic, at llhttp's speed;
- nodetap's own framing, for everything else: it knows the offset of every message boundary,
  which HEAD and CONNECT answers, upgrades, gaps, parse errors and resynchronisation need,
  and which httptools cannot tell. Bytes methods and compiled regular expressions do the
  scanning; one decode (latin-1) per header block.

``bench/http1_parse.py`` measures both against h11 and bare httptools on the same bytes.

Bad input never raises (unless ``raise_errors=True``): it is counted in ``stats``, the
message it hit is returned with the flag ``"parse_error"``, and the parser looks for the next
start line. A stream whose first message is not HTTP/1.x marks the parser ``failed``.
"""

from __future__ import annotations

import contextlib
import re
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from agent.protocols.http1.fastpath import FastPath
from agent.protocols.http1.types import Headers, HttpRequest, HttpResponse

MAX_HEADER_BYTES = 64 * 1024  # a start line plus header block larger than this is an error
MAX_CHUNK_LINE = 4096  # chunk-size line (with extensions)
MAX_START_LINE = 16 * 1024  # longest start line the resynchroniser recognises
RESYNC_FAIL_BYTES = 1 << 20  # resync mode: no message start within this many bytes -> failed
LOST = ""  # ResponseParser.expect_lost(): the method of a request lost before the capture
HELD_MAX = 1 << 20  # bytes kept after an upgrade request while its answer is awaited
FAST_BACKOFF = 32  # after two chunks in a row the fast path could not take, skip it this often

# Parser states.
_IDLE = 0  # between messages: expecting a start line
_BODY = 1  # Content-Length body, _rem bytes left
_CHUNK_SIZE = 2  # expecting a chunk-size line
_CHUNK_DATA = 3  # inside chunk data, _rem bytes left
_CHUNK_CRLF = 4  # expecting the CRLF after chunk data
_TRAILERS = 5  # after the last chunk: trailer fields up to an empty line
_CLOSE = 6  # response body delimited by connection close
_PEEK = 7  # response to an unseen request: the next bytes tell whether it has a body
_SCAN = 8  # out of sync: looking for a start line
_HELD = 9  # after an upgrade request: bytes held until the response decides
_DEAD = 10  # upgraded or failed: bytes ignored

_TCHAR = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_TCHAR_RE = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
# Start lines, header and trailer lines, matched on the block decoded as latin-1 (one C call
# each; a line that does not match makes the count of matches differ from the count of lines).
_REQ_LINE = re.compile("(" + _TCHAR_RE + r"+) ([\x21-\x7e\x80-\xff]+) HTTP/1\.([01])\r\n")
# (the reason phrase takes any byte but CR and LF, as llhttp does: both paths read alike)
_RESP_LINE = re.compile(r"HTTP/1\.([01]) ([0-9]{3})(?: ([^\r\n]*))?\r\n")
_FIELD = re.compile(r"^(" + _TCHAR_RE + r"+):[ \t]*([\t\x20-\x7e\x80-\xff]*)\r\n", re.MULTILINE)
_VERSION = {"0": "HTTP/1.0", "1": "HTTP/1.1"}
_NO_MARKS: list[tuple[int, int]] = []  # shared, never mutated
# _out between calls (shared, never appended to: every call that emits sets its own list)
_SPENT: list[Any] = []
_HEX = b"0123456789abcdefABCDEF"
_TOKEN_RE = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED_RE = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
# What follows the first ";" of a chunk-size line, as strict llhttp reads it: ";"-separated
# items "name" or "name=value", a value being token characters then at most one quoted
# string, names and values may be empty, no whitespace; no ";" at the end (checked apart).
_EXT_ITEM = rb"(?:%s)?(?:=(?:%s)?(?:%s)?)?" % (_TOKEN_RE, _TOKEN_RE, _QUOTED_RE)
_CHUNK_EXT = re.compile(rb"(?:%s;)*%s" % (_EXT_ITEM, _EXT_ITEM))

# Where the resynchroniser may start parsing again: a request line (a known method anywhere,
# any method token at the start of a line) or a status line, complete with its CRLF.
_METHODS = (
    b"GET|HEAD|POST|PUT|DELETE|CONNECT|OPTIONS|TRACE|PATCH|PROPFIND|PROPPATCH|MKCOL|COPY|MOVE"
    b"|LOCK|UNLOCK|SEARCH|REPORT|PURGE|MKCALENDAR|LINK|UNLINK|QUERY"
)
_REQ_START = re.compile(
    rb"(?:(?<![^\n])[A-Z][A-Z0-9_-]{0,31}|%s) [\x21-\x7e\x80-\xff]{1,%d} HTTP/1\.[01]\r\n"
    % (_METHODS, MAX_START_LINE)
)
_RESP_START = re.compile(rb"HTTP/1\.[01] [0-9]{3}(?: [^\r\n]{0,1024})?\r\n")


class ParseError(Exception):
    """Bytes that are not valid HTTP/1.x (raised only with ``raise_errors=True``).

    ``messages``: those completed before it, then the one it hit (flagged "parse_error") if
    that one's start line was valid.
    """

    def __init__(self, reason: str, messages: list[HttpRequest] | list[HttpResponse]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.messages = messages


@dataclass(slots=True)
class Http1Stats:
    """Counters of one parser, or of both directions when a stitcher shares them."""

    messages: int = 0  # complete messages returned (1xx interim responses not included)
    interim: int = 0  # 1xx interim responses skipped
    parse_errors: int = 0
    resyncs: int = 0  # times a message start was found after skipping bytes
    skipped_bytes: int = 0  # bytes skipped while out of sync
    gaps: int = 0
    gap_bytes: int = 0
    truncated: int = 0  # messages whose body was cut to max_body
    incomplete: int = 0  # messages cut short (close, gap, error)
    exchanges: int = 0  # set by the stitcher
    fast_chunks: int = 0  # chunks parsed by the llhttp fast path (the rest: own framing)


class _Error(Exception):
    """Internal: invalid bytes at ``pos`` of the current buffer."""

    def __init__(self, reason: str, pos: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.pos = pos


# (content_length, chunked, transfer_encoding_present, keep_alive, asks_upgrade)
_Framing = tuple[int | None, bool, bool, bool, bool]


def _token_list(value: str) -> list[str]:
    """A comma-separated header value as lower-case tokens."""
    return [t.strip(" \t").lower() for t in value.split(",")]


M = TypeVar("M", HttpRequest, HttpResponse)


class _Parser(Generic[M]):
    """Framing shared by both directions; subclasses parse the start line and decide bodies.

    ``max_body``: bodies longer are cut (flag "truncated"; ``body_size`` counts every byte).
    ``resync``: the stream may begin mid-message; bytes are skipped up to a start line.
    ``raise_errors``: raise ParseError instead of flagging and resynchronising.
    ``stats``: counters to add to (a stitcher shares one between its two parsers).
    ``fast``: use the llhttp fast path where it can serve (results are the same).
    """

    _is_request = True

    def __init__(
        self,
        max_body: int = 1 << 20,
        resync: bool = False,
        *,
        raise_errors: bool = False,
        stats: Http1Stats | None = None,
        fast: bool = True,
    ) -> None:
        self.max_body = max_body
        self.resync = resync
        self.raise_errors = raise_errors
        self.stats = stats if stats is not None else Http1Stats()
        self._state = _SCAN if resync else _IDLE
        self._rest = b""  # unconsumed bytes (partial header block or line)
        self._rest_marks: list[tuple[int, int]] = []  # (offset in _rest, ts) chunk starts
        self._marks: list[tuple[int, int]] = []  # same for the current buffer
        self._ts = 0  # timestamp of the chunk being parsed
        self._last_ts = 0  # timestamp of the chunk holding the last byte consumed
        self._out: list[tuple[M, int]] = []
        self._msg: M | None = None  # message whose body/trailers are being read
        self._parts: list[bytes] = []
        self._room = max_body
        self._rem = 0
        self._seen = False  # a message has started in sync at least once
        self._skipped_start = 0  # bytes skipped before the first message (resync mode)
        self._gap_next = False  # flag the next message "gap" (bytes before it were lost)
        self._failed = False
        self._upgraded = False
        self._closing = False  # the last message said Connection: close
        # responses: -1 = answers no request that was told; n >= 0 = answers the request n
        # places after the oldest waiting one (the n before it lost their answers in a gap)
        self._link = 0
        self._after_gap = False  # responses: bytes were lost before the next message
        self._popped = False  # responses: the method of its request was taken already
        self._post = False  # _after_complete() has work to do
        self._held: list[tuple[bytes | None, int, int]] = []  # (data or None for a gap, ts, n)
        self._held_bytes = 0
        self._buf = b""
        self._body_at = 0
        self._peek_next = (_BODY, 0)  # _PEEK: the state and length if a body follows
        self.last_error: str | None = None
        # llhttp for chunks of whole messages (fastpath.py); None: own framing only
        self._fast = FastPath(self._is_request, max_body) if fast else None
        self._fast_misses = 0
        self._fast_skip = 0

    # -- public -----------------------------------------------------------------------------

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
        return self._msg is not None or (self._state == _IDLE and bool(self._rest.strip(b"\r\n")))

    def feed(self, data: bytes | bytearray | memoryview, ts_ns: int) -> list[M]:
        """Parse the next bytes of the stream; return the messages they completed."""
        return [m for m, _ in self._feed(data, ts_ns)]

    def gap(self, nbytes: int, ts_ns: int) -> list[M]:
        """``nbytes`` of the stream are missing here; return messages this ends."""
        return [m for m, _ in self._gap(nbytes, ts_ns)]

    def close(self, ts_ns: int) -> list[M]:
        """The stream ended: finish a close-delimited body, return a cut-short message."""
        return [m for m, _ in self._close(ts_ns)]

    # -- driving ----------------------------------------------------------------------------

    def _feed(self, data: bytes | bytearray | memoryview, ts_ns: int) -> list[tuple[M, int]]:
        """Parse ``data``; return (message, link) pairs it completed (link: see _link)."""
        out: list[tuple[M, int]] = []
        self._out = out
        state = self._state
        if state >= _HELD:
            if state == _HELD and data:
                self._hold(bytes(data), ts_ns)
            return out
        if type(data) is not bytes:
            data = bytes(data)
        if not data:
            return out
        if state == _IDLE and self._fast is not None and not self._rest and self._fast_ok():
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
                    self._out = _SPENT  # idle connections keep no messages alive
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
            self._marks = _NO_MARKS
            buf = data
        pos = 0
        while True:
            try:
                pos = self._run(buf, pos)
                break
            except _Error as e:
                pos = self._on_error(buf, e)
        if pos >= len(buf):
            if rest:
                self._rest = b""
                self._rest_marks = []
        else:
            self._keep(buf, pos)
        self._out = _SPENT  # idle connections keep no messages alive
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

    def _ts_at(self, pos: int) -> int:
        """Timestamp of the chunk holding byte ``pos`` of the current buffer."""
        ts = self._ts
        for off, mts in reversed(self._marks):
            if off <= pos:
                return mts
        return ts

    def _run(self, buf: bytes, pos: int) -> int:
        n = len(buf)
        while pos < n:
            state = self._state
            if state == _IDLE:
                c = buf[pos]
                if c == 13 or c == 10:  # empty lines between messages are tolerated
                    pos += 1
                    continue
                if self._closing:
                    raise _Error("data after Connection: close", pos)
                end = buf.find(b"\r\n\r\n", pos)
                if end < 0:
                    if n - pos > MAX_HEADER_BYTES:
                        raise _Error("header block too large", pos)
                    self._check_partial(buf, pos)
                    break
                pos = self._head(buf, pos, end)
            elif state in (_BODY, _CHUNK_DATA):
                take = self._rem
                if take >= n - pos:
                    take = n - pos
                    self._body(buf[pos:] if pos else buf)
                else:
                    self._body(buf[pos : pos + take])
                pos += take
                self._rem -= take
                if self._rem == 0:
                    if state == _BODY:
                        self._complete()
                    else:
                        self._state = _CHUNK_CRLF
            elif state == _CHUNK_SIZE:
                pos = self._chunks(buf, pos)
                if self._state == _CHUNK_SIZE:
                    break  # need more bytes for the next chunk-size line
            elif state == _CHUNK_CRLF:
                if n - pos < 2:
                    if buf[pos] != 13:
                        raise _Error("expected CRLF after chunk data", pos)
                    break
                if buf[pos] != 13 or buf[pos + 1] != 10:
                    raise _Error("expected CRLF after chunk data", pos)
                pos += 2
                self._state = _CHUNK_SIZE
            elif state == _TRAILERS:
                if n - pos < 2:
                    break
                if buf[pos] == 13 and buf[pos + 1] == 10:
                    pos += 2
                    self._complete()
                    continue
                end = buf.find(b"\r\n\r\n", pos)
                if end < 0:
                    if n - pos > MAX_HEADER_BYTES:
                        raise _Error("trailer block too large", pos)
                    break
                msg = self._msg
                assert msg is not None
                msg.trailers = self._fields(buf[pos : end + 2].decode("latin-1"), 0, pos)
                pos = end + 4
                self._complete()
            elif state == _CLOSE:
                self._body(buf[pos:] if pos else buf)
                self._last_ts = self._ts
                pos = n
            elif state == _PEEK:
                if buf.startswith(b"HTTP/1.", pos) or (
                    n - pos < 7 and b"HTTP/1.".startswith(buf[pos:])
                ):
                    self._complete(self._last_ts)  # a status line: no body (a HEAD answer)
                else:
                    self._state, self._rem = self._peek_next
            elif state == _SCAN:
                found = self._scan(buf, pos)
                if found < 0:
                    return self._scan_keep(buf, pos)
                pos = found
            elif state == _HELD:
                self._hold(buf[pos:], self._ts_at(pos))
                pos = n
            else:  # _DEAD
                pos = n
        return pos

    # -- messages ---------------------------------------------------------------------------

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
        except _Error as e:
            self._head_error(msg)
            e.pos = end + 3  # look for the next start line after this header block
            raise
        finally:
            self._buf = b""
        return end + 4

    @staticmethod
    def _fields(text: str, start: int, pos: int) -> Headers:
        """Header (or trailer) lines of ``text`` from ``start``, each ending in CRLF."""
        headers: Headers = _FIELD.findall(text, start)
        if len(headers) != text.count("\n", start):
            raise _Error("invalid header line", pos)
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
    def _semantics(text: str, hs: int, version: str, pos: int) -> _Framing:
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
                raise _Error("invalid character in Content-Length", pos)
            if len(v) > 18:
                raise _Error("Content-Length overflow", pos)
            length = int(v)
            if low.find("\ncontent-length:", cl_at + 16) >= 0:
                raise _Error("duplicate Content-Length", pos)
        chunked = te = False
        if te_at >= 0:
            if length is not None:
                raise _Error("Transfer-Encoding can't be present with Content-Length", pos)
            te = True
            while te_at >= 0:
                codings = _token_list(low[te_at + 19 : low.index("\r", te_at + 19)])
                # chunked must be the last coding, applied once
                chunked = not chunked and codings[-1] == "chunked" and "chunked" not in codings[:-1]
                te_at = low.find("\ntransfer-encoding:", te_at + 19)
        if conn_at < 0:
            return length, chunked, te, default_keep_alive, False
        v = low[conn_at + 12 : low.index("\r", conn_at + 12)].strip(" \t")
        conn = _token_list(v) if "," in v else [v]
        conn_at = low.find("\nconnection:", conn_at + 12)
        while conn_at >= 0:
            conn += _token_list(low[conn_at + 12 : low.index("\r", conn_at + 12)])
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
                raise _Error("bare CR or LF in start line", pos)
            self._check_prefix(line, pos)
            return
        msg, hs = self._start_line(buf[pos : eol + 2].decode("latin-1"), pos)
        n = len(buf)
        if eol + 2 < n and buf[eol + 2] in (32, 9):
            raise _Error("unexpected space after start line", pos)
        last = buf.rfind(b"\r\n", eol + 2)
        if last > eol:
            text = buf[pos : last + 2].decode("latin-1")
            self._fields(text, hs, pos)
            self._semantics(text, hs, msg.version, pos)
        tail = buf[(last if last > eol else eol) + 2 :]
        if b"\n" in tail or b"\r" in tail[:-1]:
            raise _Error("bare CR or LF in header block", pos)

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

        Returns where it stopped; leaves _CHUNK_SIZE when a chunk is only partly here (the
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
                    raise _Error("chunk size line too long", pos)
                return pos
            line = buf[pos:eol]
            if len(line) > 16 or line.translate(None, _HEX) or not line:
                size = self._chunk_size(line, pos)  # extensions, or an error
            else:
                size = int(line, 16)
            start = eol + 2
            if not size:
                self._state = _TRAILERS
                return start
            end = start + size
            if end + 2 > n or buf[end] != 13 or buf[end + 1] != 10 or self._room < size:
                self._rem = size
                self._state = _CHUNK_DATA
                return start
            parts.append(buf[start:end])
            self._room -= size
            msg.body_size += size
            pos = end + 2

    @staticmethod
    def _chunk_size(line: bytes, pos: int) -> int:
        """The size on a chunk-size line that has extensions (or is invalid)."""
        size, semi, ext = line.partition(b";")
        if not size or size.translate(None, _HEX) or len(size) > 16:
            raise _Error("invalid character in chunk size", pos)
        if semi and (not ext or ext[-1] == 59 or _CHUNK_EXT.fullmatch(ext) is None):
            raise _Error("invalid chunk extensions", pos)
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
        self._state = _IDLE
        self.stats.messages += 1
        self._out.append((msg, self._link))
        self._link = 0
        self._popped = False
        if self._post:
            self._after_complete()

    def _after_complete(self) -> None:
        """A message that changes the connection (upgrade) completed (subclass hook)."""

    def _emit(self, msg: M) -> None:
        self._out.append((msg, self._link))
        self._link = 0
        self._popped = False

    # -- errors, gaps, resync -----------------------------------------------------------------

    def _on_error(self, buf: bytes, e: _Error) -> int:
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
            self._state = _DEAD
            self._failed = True
            raise ParseError(e.reason, done)
        if not self._seen and not self.resync:
            self._fail()
            return len(buf)
        self._state = _SCAN
        self._after_gap = True  # what the skipped bytes held is lost to the pairing too
        return e.pos + 1 if e.pos < len(buf) else len(buf)

    def _finish_cut(self, msg: M) -> None:
        parts = self._parts
        msg.body = parts[0] if len(parts) == 1 else b"".join(parts)
        msg.end_ts_ns = self._last_ts
        self._msg = None
        self._parts = []
        self._emit(msg)

    def _fail(self) -> None:
        self._failed = True
        self._state = _DEAD
        self._rest = b""
        self._rest_marks = []

    def _scan(self, buf: bytes, pos: int) -> int:
        """Find the next start line at or after ``pos``; switch to _IDLE there. -1: none yet."""
        pat = _REQ_START if self._is_request else _RESP_START
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
        self._state = _IDLE
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

    def _gap(self, nbytes: int, ts_ns: int) -> list[tuple[M, int]]:
        try:
            return self._gap_in(nbytes, ts_ns)
        finally:
            self._out = _SPENT

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
        if state == _DEAD:
            return out
        if state == _HELD:
            self._held.append((None, ts_ns, nbytes))
            return out
        msg = self._msg
        if msg is not None and not self._rest and state in (_BODY, _CHUNK_DATA, _CLOSE):
            msg.flags.add("gap")
            self._room = -1  # bytes after the hole are not stored: the body would be wrong
            if state == _CLOSE:
                msg.body_size += nbytes
                return out
            if nbytes < self._rem:
                self._rem -= nbytes
                msg.body_size += nbytes
                return out
            if state == _CHUNK_DATA and nbytes == self._rem:
                msg.body_size += nbytes
                self._rem = 0
                self._state = _CHUNK_CRLF  # the hole ended with the chunk: still in sync
                return out
            if state == _BODY:
                lost = nbytes - self._rem
                msg.body_size += self._rem
                self._rem = 0
                self._complete()
                if not lost:
                    return out
                self._gap_next = self._after_gap = True
                self._enter_scan()
                return out
            msg.body_size += self._rem
        if msg is not None:
            msg.flags.update(("gap", "incomplete"))
            self.stats.incomplete += 1
            self._finish_cut(msg)
        elif state == _IDLE and self._rest.strip(b"\r\n"):
            self._partial_head(self._rest, "gap")
        else:
            self._gap_next = True
        self._after_gap = True
        self._enter_scan()
        return out

    def _enter_scan(self) -> None:
        self._rest = b""
        self._rest_marks = []
        self._state = _SCAN

    def _close(self, ts_ns: int) -> list[tuple[M, int]]:
        try:
            return self._close_in(ts_ns)
        finally:
            self._out = _SPENT

    def _close_in(self, ts_ns: int) -> list[tuple[M, int]]:
        out: list[tuple[M, int]] = []
        self._out = out
        state = self._state
        self._ts = ts_ns
        self._marks = self._rest_marks
        if state in (_CLOSE, _PEEK):
            self._complete(self._last_ts)
        elif self._msg is not None:
            msg = self._msg
            msg.flags.add("incomplete")
            self.stats.incomplete += 1
            self._finish_cut(msg)
        elif state == _IDLE and self._rest.strip(b"\r\n"):
            self._partial_head(self._rest)
        self._rest = b""
        self._rest_marks = []
        self._state = _DEAD
        self._held = []
        return out

    def _partial_head(self, rest: bytes, flag: str = "") -> None:
        """A header block cut short (close, gap): return what its start line says."""
        start = len(rest) - len(rest.lstrip(b"\r\n"))
        eol = rest.find(b"\r\n", start)
        line = rest[start:eol] if eol >= 0 else rest[start:]
        try:
            msg, _ = self._start_line(line.decode("latin-1") + "\r\n", 0)
        except _Error:
            self.stats.skipped_bytes += len(rest)
            return
        last = rest.rfind(b"\r\n")
        if eol >= 0 and last > eol:  # the header lines that came whole
            with contextlib.suppress(_Error):
                msg.headers = self._fields(rest[eol + 2 : last + 2].decode("latin-1"), 0, 0)
        msg.start_ts_ns = self._ts_at(start)
        msg.end_ts_ns = self._ts_at(len(rest) - 1)
        self._head_error(msg)
        msg.flags.add("incomplete")
        if self._gap_next or flag:
            msg.flags.add("gap")
            self._gap_next = False
        self.stats.incomplete += 1
        self._emit(msg)


class RequestParser(_Parser[HttpRequest]):
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
        return self._state == _HELD

    def _start_line(self, text: str, pos: int) -> tuple[HttpRequest, int]:
        m = _REQ_LINE.match(text)
        if m is None:
            raise _Error("invalid request line", pos)
        self._announced = False
        method, url, minor = m.groups()
        return HttpRequest(method, url, _VERSION[minor], [], b"", 0), m.end()

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
        if method.translate(None, _TCHAR) or len(method) > 32:
            raise _Error("invalid method", pos)
        if len(parts) > 3 or (
            len(parts) == 3
            and not (b"HTTP/1.1".startswith(parts[2]) or b"HTTP/1.0".startswith(parts[2]))
        ):
            raise _Error("invalid request line", pos)

    def _framing(self, msg: HttpRequest, text: str, hs: int, pos: int) -> None:
        tunnel = msg.method == "CONNECT" or msg.method == "PRI"
        try:
            length, chunked, te, keep_alive, asks = self._semantics(text, hs, msg.version, pos)
        except _Error:
            self._announce(msg, tunnel)
            raise
        upgrade = tunnel or asks
        self._announce(msg, upgrade)
        if te and not chunked:
            raise _Error("request has invalid Transfer-Encoding", pos)
        if upgrade:
            self._upgrade_req = self._post = True
        self._closing = not keep_alive
        if tunnel:  # the tunnel starts after the header block, whatever the headers say
            self._complete()
        elif chunked:
            self._state = _CHUNK_SIZE
        elif length:
            self._rem = length
            self._state = _BODY
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
            self._state = _HELD

    def resume(self) -> list[HttpRequest]:
        """The upgrade was refused: parse the held bytes as HTTP again."""
        out: list[tuple[HttpRequest, int]] = []
        if self._state != _HELD:
            return []
        self._state = _IDLE
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
        self._state = _DEAD
        self._held = []
        self._rest = b""


class ResponseParser(_Parser[HttpResponse]):
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
        m = _RESP_LINE.match(text)
        if m is None:
            raise _Error("invalid status line", pos)
        reason = m.group(3)
        msg = HttpResponse(int(m.group(2)), reason or "", _VERSION[m.group(1)], [], b"", 0)
        return msg, m.end()

    def _check_prefix(self, line: bytes, pos: int) -> None:
        if not b"HTTP/1.".startswith(line[:7]):
            raise _Error("expected HTTP/1.x status line", pos)

    def _framing(self, msg: HttpResponse, text: str, hs: int, pos: int) -> None:
        status = msg.status_code
        if status < 200 and status != 101:
            self.stats.interim += 1
            self._msg = None
            self._state = _IDLE
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
                self._peek_next = (_CHUNK_SIZE, 0) if chunked else (_BODY, length or 0)
                self._state = _PEEK
                return
        if chunked:
            self._state = _CHUNK_SIZE
        elif te or length is None:
            self._state = _CLOSE
        elif length:
            self._rem = length
            self._state = _BODY
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
            self._state = _DEAD
        elif self._asked_upgrade:
            # An ordinary answer to a request that asked to switch protocols: the request side
            # goes on as HTTP, and must tell its methods before more responses are parsed.
            self._asked_upgrade = False
            if self.on_refused is not None:
                self.on_refused()
