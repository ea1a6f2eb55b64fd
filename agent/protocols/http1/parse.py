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

One job per module, each building on the one before:

- syntax.py    size limits and compiled patterns of the wire syntax
- state.py     the parser states and fields (``ParserState``)
- head.py      start lines, header blocks, what the headers say about the body
- body.py      Content-Length and chunked bodies, trailers, completing a message
- recovery.py  parse errors, gaps, resynchronisation, the end of the stream
- machine.py   ``feed``/``gap``/``close``, the fast path hand-over, the loop over states
- request.py, response.py  each direction's start line and body framing (HEAD, 1xx, 204,
  304, close-delimited, Upgrade and CONNECT)
- errors.py, stats.py  ``ParseError`` and the counters ``Http1Stats``

This module gathers the public names.
"""

from agent.protocols.http1.errors import ParseError
from agent.protocols.http1.machine import FAST_BACKOFF, HELD_MAX
from agent.protocols.http1.recovery import RESYNC_FAIL_BYTES
from agent.protocols.http1.request import RequestParser
from agent.protocols.http1.response import LOST, ResponseParser
from agent.protocols.http1.stats import Http1Stats
from agent.protocols.http1.syntax import MAX_CHUNK_LINE, MAX_HEADER_BYTES, MAX_START_LINE

__all__ = [
    "FAST_BACKOFF",
    "HELD_MAX",
    "LOST",
    "MAX_CHUNK_LINE",
    "MAX_HEADER_BYTES",
    "MAX_START_LINE",
    "RESYNC_FAIL_BYTES",
    "Http1Stats",
    "ParseError",
    "RequestParser",
    "ResponseParser",
]
