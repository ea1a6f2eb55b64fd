"""Finding a chunked body's framing again after a gap swallowed part of it.

After a hole, the next chunk-size line is somewhere ahead, after the rest of a chunk whose
size was lost. A chunk-size line (hex digits, extensions, CRLF) right after a CRLF is only
a candidate: chunk data can hold such bytes. A candidate is believed once the framing it
implies holds: its data ends exactly at a CRLF followed by another whole chunk-size line,
or it is the last chunk ("0") followed by an empty line or a trailer block that parses.
Proof is bounded: a candidate whose proof would need more than ``PROOF_MAX`` bytes is not
believed (a later chunk boundary will be), so what the parser keeps while it waits stays
bounded too.

Sans-IO: ``find_chunk_boundary`` looks at a buffer and says where framing resumes.
"""

from __future__ import annotations

import re

from agent.protocols.http1.syntax import FIELD, HEX, MAX_CHUNK_LINE, MAX_HEADER_BYTES

FOUND = 0  # framing resumes at the returned position (the start of a chunk-size line)
MORE = 1  # a candidate at the returned position needs more bytes to be proven or refuted
NONE = 2  # no candidate in the buffer
PROOF_MAX = 1 << 20  # bytes from a candidate to the end of its proof, at most
# what may follow a message's end: a request line, a status line (or the start of one)
NEXT_MESSAGE = re.compile(
    rb"[A-Z][A-Z0-9_-]{0,31}(?: |\Z)|HTTP/1\.|H(?:T(?:T(?:P(?:/(?:1)?)?)?)?)?\Z|\r\n"
)


def chunk_size(line: bytes) -> int | None:
    """The size on a chunk-size line (without its CRLF), or None if it is not one."""
    size, semi, ext = line.partition(b";")
    if not size or len(size) > 16 or size.translate(None, HEX):
        return None
    if semi and (not ext or b"\n" in ext or b"\r" in ext):
        return None
    return int(size, 16)


def _may_begin(part: bytes) -> bool:
    """Whether ``part`` (no CRLF yet) can be the beginning of a chunk-size line."""
    if part.endswith(b"\r"):
        part = part[:-1]
    size, semi, ext = part.partition(b";")
    if not size:
        return not semi
    return len(size) <= 16 and not size.translate(None, HEX) and b"\r" not in ext


def _trailers_parse(block: bytes) -> bool:
    text = block.decode("latin-1")
    return len(FIELD.findall(text)) == text.count("\n")


def _ends_message(buf: bytes, end: int) -> int:
    """A last chunk ending at ``end`` is believed if the stream pauses there (the end of
    what was written) or the next message begins; chunk data that merely contains
    CRLF "0" CRLF CRLF goes on with other bytes."""
    return FOUND if end == len(buf) or NEXT_MESSAGE.match(buf, end) else NONE


def prove(buf: bytes, at: int) -> int:
    """Whether the chunk-size line that would start at ``at`` holds up: FOUND, MORE (the
    proof runs past the end of ``buf``) or NONE."""
    n = len(buf)
    eol = buf.find(b"\r\n", at, at + MAX_CHUNK_LINE)
    if eol < 0:
        return MORE if n - at < MAX_CHUNK_LINE and _may_begin(buf[at:n]) else NONE
    size = chunk_size(buf[at:eol])
    if size is None:
        return NONE
    after = eol + 2
    if size == 0:  # the last chunk: an empty line, or trailer fields then one
        if n - after < 2:
            return MORE
        if buf[after] == 13 and buf[after + 1] == 10:
            return _ends_message(buf, after + 2)
        end = buf.find(b"\r\n\r\n", after, after + MAX_HEADER_BYTES)
        if end < 0:
            return MORE if n - after < MAX_HEADER_BYTES else NONE
        return _ends_message(buf, end + 4) if _trailers_parse(buf[after : end + 2]) else NONE
    data_end = after + size
    if data_end + 2 - at > PROOF_MAX:
        return NONE
    if data_end + 2 > n:
        return MORE
    if buf[data_end] != 13 or buf[data_end + 1] != 10:
        return NONE
    nxt = data_end + 2
    eol = buf.find(b"\r\n", nxt, nxt + MAX_CHUNK_LINE)
    if eol < 0:
        if n - nxt >= MAX_CHUNK_LINE:
            return NONE
        return MORE if _may_begin(buf[nxt:n]) else NONE
    return FOUND if chunk_size(buf[nxt:eol]) is not None else NONE


def find_chunk_boundary(buf: bytes, pos: int, limit: int, at_hole: bool) -> tuple[int, int]:
    """The first proven chunk-size line starting in ``buf[pos:limit]``: (FOUND, where);
    else the first candidate still waiting for bytes: (MORE, where); else (NONE, -1).

    Candidates start right after a CRLF, and at ``pos`` itself when ``at_hole`` (the hole
    ended there: it may have ended with a chunk's CRLF). A candidate proven within the
    buffer wins over an earlier one still waiting (chunk data can begin with hex digits),
    and so does a start line at ``limit`` (< len(buf)).
    """
    waiting = -1
    if at_hole and pos < limit:
        got = prove(buf, pos)
        if got == FOUND:
            return FOUND, pos
        if got == MORE:
            waiting = pos
    find = buf.find
    i = find(b"\r\n", pos, limit)
    n = len(buf)
    while i >= 0:
        at = i + 2
        if at >= limit:
            if at == n and limit == n and waiting < 0:
                waiting = at  # a CRLF at the very end: a candidate may follow
            break
        if buf[at] in HEX:
            got = prove(buf, at)
            if got == FOUND:
                return FOUND, at
            if got == MORE and waiting < 0:
                waiting = at
        i = find(b"\r\n", at, limit)
    # a start line at ``limit`` ends the wait: a candidate whose proof would run past it is
    # chunk data that looks like a size (hex text is common), rarer than a message start
    return (MORE, waiting) if waiting >= 0 and limit == n else (NONE, -1)
