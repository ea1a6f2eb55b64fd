"""The records the HTTP/1.x parser produces: requests, responses, and paired exchanges.

Plain data, no I/O. Header names and values, method, target and reason phrase are
the wire bytes decoded as ISO-8859-1 (every byte maps to one code point, so nothing
is lost and replay can re-encode the exact bytes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

Headers = list[tuple[str, str]]


@dataclass(slots=True)
class HttpRequest:
    """One request as sent on the wire."""

    method: str
    url: str
    version: str  # "HTTP/1.1"
    headers: Headers
    body: bytes  # after transfer decoding, cut to the parser's body limit
    body_size: int  # size of the whole decoded body
    trailers: Headers = field(default_factory=list)
    start_ts_ns: int = 0  # timestamp given with the bytes holding the first byte
    end_ts_ns: int = 0  # timestamp given with the bytes holding the last byte
    flags: set[str] = field(default_factory=set)  # "truncated", "gap", "incomplete", "upgrade"


@dataclass(slots=True)
class HttpResponse:
    """One final (non-1xx) response as sent on the wire."""

    status_code: int
    status_message: str
    version: str
    headers: Headers
    body: bytes
    body_size: int
    trailers: Headers = field(default_factory=list)
    start_ts_ns: int = 0
    end_ts_ns: int = 0
    flags: set[str] = field(default_factory=set)


@dataclass(slots=True)
class HttpExchange:
    """A request with the response that answered it (either may be missing)."""

    request: HttpRequest | None
    response: HttpResponse | None
    flags: set[str] = field(default_factory=set)  # union of both sides' flags plus pairing flags
