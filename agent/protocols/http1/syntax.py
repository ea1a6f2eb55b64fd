"""The wire syntax of HTTP/1.x as the parsers match it: size limits and compiled patterns.

Start lines, header and trailer lines, chunk-size lines with extensions, and the start lines
the resynchroniser looks for (recovery.py). Strings here are matched on bytes decoded as
latin-1, bytes patterns on the raw buffer; nothing here holds state.
"""

from __future__ import annotations

import re

MAX_HEADER_BYTES = 1 << 20  # a longer start line plus header block: flagged, then skipped
MAX_CHUNK_LINE = 4096  # chunk-size line (with extensions)
MAX_START_LINE = 16 * 1024  # longest start line the resynchroniser recognises

TCHAR = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_TCHAR_RE = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]"
# Start lines, header and trailer lines, matched on the block decoded as latin-1 (one C call
# each; a line that does not match makes the count of matches differ from the count of lines).
REQ_LINE = re.compile("(" + _TCHAR_RE + r"+) ([\x21-\x7e\x80-\xff]+) HTTP/1\.([01])\r\n")
# (the reason phrase takes any byte but CR and LF, as llhttp does: both paths read alike)
RESP_LINE = re.compile(r"HTTP/1\.([01]) ([0-9]{3})(?: ([^\r\n]*))?\r\n")
FIELD = re.compile(r"^(" + _TCHAR_RE + r"+):[ \t]*([\t\x20-\x7e\x80-\xff]*)\r\n", re.MULTILINE)
VERSION = {"0": "HTTP/1.0", "1": "HTTP/1.1"}
HEX = b"0123456789abcdefABCDEF"
_TOKEN_RE = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED_RE = rb'"(?:[\t !#-\[\]-~\x80-\xff]|\\[\t -~\x80-\xff])*"'
# What follows the first ";" of a chunk-size line, as strict llhttp reads it: ";"-separated
# items "name" or "name=value", a value being token characters then at most one quoted
# string, names and values may be empty, no whitespace; no ";" at the end (checked apart).
_EXT_ITEM = rb"(?:%s)?(?:=(?:%s)?(?:%s)?)?" % (_TOKEN_RE, _TOKEN_RE, _QUOTED_RE)
CHUNK_EXT = re.compile(rb"(?:%s;)*%s" % (_EXT_ITEM, _EXT_ITEM))

# Where the resynchroniser may start parsing again: a request line (a known method anywhere,
# any method token at the start of a line) or a status line, complete with its CRLF.
_METHODS = (
    b"GET|HEAD|POST|PUT|DELETE|CONNECT|OPTIONS|TRACE|PATCH|PROPFIND|PROPPATCH|MKCOL|COPY|MOVE"
    b"|LOCK|UNLOCK|SEARCH|REPORT|PURGE|MKCALENDAR|LINK|UNLINK|QUERY"
)
REQ_START = re.compile(
    rb"(?:(?<![^\n])[A-Z][A-Z0-9_-]{0,31}|%s) [\x21-\x7e\x80-\xff]{1,%d} HTTP/1\.[01]\r\n"
    % (_METHODS, MAX_START_LINE)
)
RESP_START = re.compile(rb"HTTP/1\.[01] [0-9]{3}(?: [^\r\n]{0,1024})?\r\n")
