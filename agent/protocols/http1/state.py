"""What one direction's parser knows between chunks: its states and its fields.

The states of the per-buffer state machine (machine.py) and ``ParserState``, the base of
the parser classes: every field, set up in one place, and the two helpers every part uses
(the timestamp of a byte, handing out a message). The parts that read heads (head.py),
bodies (body.py) and recover from bad input (recovery.py) build on it, in that order.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from agent.protocols.http1.fastpath import FastPath
from agent.protocols.http1.stats import Http1Stats
from agent.protocols.http1.types import HttpRequest, HttpResponse

# Parser states.
IDLE = 0  # between messages: expecting a start line
BODY = 1  # Content-Length body, _rem bytes left
CHUNK_SIZE = 2  # expecting a chunk-size line
CHUNK_DATA = 3  # inside chunk data, _rem bytes left
CHUNK_CRLF = 4  # expecting the CRLF after chunk data
TRAILERS = 5  # after the last chunk: trailer fields up to an empty line
CLOSE = 6  # response body delimited by connection close
PEEK = 7  # response to an unseen request: the next bytes tell whether it has a body
SCAN = 8  # out of sync: looking for a start line
HELD = 9  # after an upgrade request: bytes held until the response decides
DEAD = 10  # upgraded or failed: bytes ignored
CHUNK_SCAN = 11  # chunk framing lost in a gap: looking for a chunk-size line or a start line

NO_MARKS: list[tuple[int, int]] = []  # shared, never mutated
# _out between calls (shared, never appended to: every call that emits sets its own list)
SPENT: list[Any] = []

M = TypeVar("M", HttpRequest, HttpResponse)


class ParserState(Generic[M]):
    """The fields of one direction's parser (options: see ``Parser`` in machine.py)."""

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
        self._state = SCAN if resync else IDLE
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
        self._chunk_at_hole = False  # CHUNK_SCAN: the buffer begins where a hole ended
        self._chunk_keep = -1  # CHUNK_SCAN: where a candidate waiting for bytes begins
        self._peek_next = (BODY, 0)  # PEEK: the state and length if a body follows
        self.last_error: str | None = None
        # llhttp for chunks of whole messages (fastpath.py); None: own framing only
        self._fast = FastPath(self._is_request, max_body) if fast else None
        self._fast_misses = 0
        self._fast_skip = 0

    def _ts_at(self, pos: int) -> int:
        """Timestamp of the chunk holding byte ``pos`` of the current buffer."""
        ts = self._ts
        for off, mts in reversed(self._marks):
            if off <= pos:
                return mts
        return ts

    def _emit(self, msg: M) -> None:
        self._out.append((msg, self._link))
        self._link = 0
        self._popped = False
