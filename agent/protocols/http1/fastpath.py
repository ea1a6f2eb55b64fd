"""llhttp (httptools) over chunks that hold whole messages: the common case, at C speed.

The parsers (machine.py) hand a chunk to ``FastPath.run`` only when the stream is at a message
boundary and nothing about the next messages needs byte offsets (no HEAD or CONNECT answer
expected, no upgrade, no gap, no resync). The chunk is accepted only if llhttp parses it
without error and ends at a message boundary; otherwise ``run`` returns None and the caller
parses the same chunk with its own framing, which knows every offset. So llhttp never has to
tell where it stopped (httptools cannot), and both paths give the same records.
"""

from __future__ import annotations

from collections.abc import Callable

import httptools

from agent.protocols.http1.types import Headers, HttpRequest, HttpResponse

_VERSIONS = {"1.1": "HTTP/1.1", "1.0": "HTTP/1.0"}
_SPENT: list[HttpRequest | HttpResponse] = []  # shared, never appended to
_SPENT_PARTS: list[bytes] = []  # shared, never appended to


class FastPath:
    """One direction's llhttp parser and the callbacks that build its records."""

    __slots__ = (
        "_add",
        "_begun",
        "_headers",
        "_parser",
        "_parts",
        "_reason",
        "_trailers",
        "_url",
        "interim",
        "keep_alive",
        "max_body",
        "out",
        "request",
        "truncated",
        "ts",
    )

    def __init__(self, request: bool, max_body: int) -> None:
        self.request = request
        self.max_body = max_body
        self._parser: httptools.HttpRequestParser | httptools.HttpResponseParser | None = None
        self.out: list[HttpRequest | HttpResponse] = []
        self.interim = 0  # 1xx responses seen (dropped)
        self.truncated = 0
        self.keep_alive = True  # of the last message
        self.ts = 0
        self._begun = 0
        self._url = b""
        self._reason = b""
        self._headers: Headers = []
        self._trailers: Headers = []
        self._parts: list[bytes] = []
        self._add: Callable[[tuple[str, str]], None] = self._headers.append

    def run(self, data: bytes, ts: int) -> list[HttpRequest | HttpResponse] | None:
        """The messages in ``data`` if it holds whole messages llhttp accepts, else None."""
        p = self._parser
        if p is None:
            p = self._parser = (
                httptools.HttpRequestParser(self)
                if self.request
                else httptools.HttpResponseParser(self)
            )
        self.out = []
        self.interim = self.truncated = self._begun = 0
        self.ts = ts
        try:
            p.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):
            self._parser = None  # its state is unknown now: a fresh one next time
            return None
        if self._begun != len(self.out) + self.interim:
            self._parser = None  # a message continues past this chunk
            return None
        return self.out

    def discard(self) -> None:
        """The caller reads the last chunk itself: start from a fresh llhttp parser."""
        self._parser = None
        self.release()

    def release(self) -> None:
        """Drop references to the last chunk's records and bodies (idle connections keep
        nothing big alive); run() and on_message_begin() set fresh ones."""
        self.out = _SPENT
        self._parts = _SPENT_PARTS

    # -- llhttp callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._begun += 1
        self._url = b""
        self._reason = b""
        self._headers = []
        self._trailers = []
        self._parts = []
        self._add = self._headers.append

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_status(self, reason: bytes) -> None:
        self._reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self._add((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self._add = self._trailers.append

    def on_body(self, body: bytes) -> None:
        self._parts.append(body)

    def on_message_complete(self) -> None:
        p = self._parser
        assert p is not None
        version = _VERSIONS.get(p.get_http_version())
        if version is None:
            raise ValueError("not HTTP/1.x")  # ends the run; the caller's parser decides
        parts = self._parts
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        size = len(body)
        if size > self.max_body:
            body = body[: self.max_body]
            flags = {"truncated"}
            self.truncated += 1
        else:
            flags = set()
        self.keep_alive = p.should_keep_alive()  # read now: llhttp resets it after the message
        ts = self.ts
        if self.request:
            assert isinstance(p, httptools.HttpRequestParser)
            method = p.get_method().decode("latin-1")
            req = HttpRequest(
                method, self._url.decode("latin-1"), version, self._headers, body, size,
                self._trailers, ts, ts, flags,
            )  # fmt: skip
            self.out.append(req)
            return
        assert isinstance(p, httptools.HttpResponseParser)
        status = p.get_status_code()
        if status < 200:
            self.interim += 1  # 1xx interim (101 ends the run as an upgrade)
            return
        resp = HttpResponse(
            status, self._reason.decode("latin-1"), version, self._headers, body, size,
            self._trailers, ts, ts, flags,
        )  # fmt: skip
        self.out.append(resp)
