"""Pair the requests and responses of one HTTP/1.x connection, in order (pipelining ok).

Callers feed each direction's bytes in the order they happened; the bytes of a request always
arrive before those of its response (causal order), so the response side knows each request's
method before it parses the answer (HEAD: no body; CONNECT 2xx: tunnel).
"""

from __future__ import annotations

from collections import deque

from agent.protocols.http1.parse import Http1Stats, RequestParser, ResponseParser
from agent.protocols.http1.types import HttpExchange, HttpRequest, HttpResponse


class Http1Stitcher:
    """Turns the two byte streams of one connection into ``HttpExchange`` records.

    ``max_body``: bodies longer are cut (flag "truncated"); ``body_size`` counts every byte.
    ``resync``: the stream may start mid-message (connection opened before the capture):
    bytes are skipped until a request line / status line. ``fast=False`` turns off the llhttp
    fast path (fastpath.py), leaving nodetap's own framing for every chunk (tests compare both).
    Nothing raises out of it: parse errors are counted in ``stats``, flagged on the exchange,
    and parsing resynchronises.

    Responses pair with requests in order. Where bytes were lost (gaps, parse errors, a
    capture that began mid-connection), timestamps settle it: a response that began before a
    request cannot answer it, and the first response after a hole in the response stream
    answers the newest request that began before it (the answers to older ones were lost).
    """

    def __init__(self, max_body: int = 1 << 20, resync: bool = False, *, fast: bool = True) -> None:
        self.stats = Http1Stats()
        self._res = ResponseParser(max_body, resync, stats=self.stats, fast=fast, guess_head=True)
        self._req = RequestParser(
            max_body,
            resync,
            stats=self.stats,
            on_head=self._on_first_head if resync else self._res.expect,
            fast=fast,
        )
        self._res.on_refused = self._resume_requests
        self._extra: list[HttpExchange] = []  # exchanges completed while resuming
        self._reqs: deque[HttpRequest] = deque()  # complete, waiting for their response
        self._resps: deque[HttpResponse] = deque()  # complete, their request is not yet
        self._upgraded = False
        self._closed = False
        self._seen_head = False
        # bytes were lost: a request message (a lone response answers one lost there) /
        # responses since the last one parsed (requests left unanswered at close lost theirs)
        self._req_gapped = False
        self._res_gapped = False

    @property
    def upgraded(self) -> bool:
        """The connection switched protocols (101, or 2xx to CONNECT); parsing stopped."""
        return self._upgraded

    @property
    def failed(self) -> bool:
        """A direction is not HTTP/1.x; the caller may stop copying this connection (what was
        parsed has been returned already)."""
        return self._req.failed or self._res.failed

    def feed_request_bytes(
        self, data: bytes | bytearray | memoryview, ts_ns: int
    ) -> list[HttpExchange]:
        """The next bytes the client sent (captured at ``ts_ns``); returns finished exchanges."""
        if self._upgraded or self._closed:
            return []
        reqs = self._req._feed(data, ts_ns)
        return self._on_requests(reqs) if reqs else []

    def feed_response_bytes(
        self, data: bytes | bytearray | memoryview, ts_ns: int
    ) -> list[HttpExchange]:
        """The next bytes the server sent (captured at ``ts_ns``); returns finished exchanges."""
        if self._upgraded or self._closed:
            return []
        resps = self._res._feed(data, ts_ns)
        out = self._on_responses(resps) if resps else []
        if self._res.failed:
            # The response stream is not HTTP/1.x: no request will get an answer. Return every
            # request now ("incomplete"), so that a caller that stops on ``failed`` loses none.
            out += self.close(ts_ns)
        return out

    def _on_first_head(self, method: str, asks_upgrade: bool, start_ts_ns: int) -> None:
        """resync: if the request stream skipped a partial request, its answer may be next."""
        if not self._seen_head:
            self._seen_head = True
            if self._req.skipped_at_start:
                self._res.expect_lost()
        self._res.expect(method, asks_upgrade, start_ts_ns)

    def _resume_requests(self) -> None:
        """The response parser saw an upgrade refused: parse the held request bytes now."""
        self._extra.extend(self._on_requests([(r, 0) for r in self._req.resume()]))

    def request_gap(self, nbytes: int, ts_ns: int) -> list[HttpExchange]:
        """``nbytes`` of the request stream are missing at this point."""
        if self._upgraded or self._closed:
            return []
        self._req_gapped = True
        return self._on_requests(self._req._gap(nbytes, ts_ns))

    def response_gap(self, nbytes: int, ts_ns: int) -> list[HttpExchange]:
        """``nbytes`` of the response stream are missing at this point."""
        if self._upgraded or self._closed:
            return []
        self._res_gapped = True
        return self._on_responses(self._res._gap(nbytes, ts_ns))

    def request_skip(self, nbytes: int, ts_ns: int) -> list[HttpExchange]:
        """``nbytes`` of the request stream were not copied on purpose (past the capture's
        copy bound): inside a body they cut it (``truncated``), elsewhere a gap."""
        if self._upgraded or self._closed:
            return []
        got = self._req._skip(nbytes, ts_ns)
        return self._on_requests(self._req._gap(nbytes, ts_ns) if got is None else got)

    def response_skip(self, nbytes: int, ts_ns: int) -> list[HttpExchange]:
        """As request_skip, for the response stream."""
        if self._upgraded or self._closed:
            return []
        got = self._res._skip(nbytes, ts_ns)
        return self._on_responses(self._res._gap(nbytes, ts_ns) if got is None else got)

    def close(self, ts_ns: int) -> list[HttpExchange]:
        """The connection ended: flush what is left (requests without response: "incomplete")."""
        if self._closed:
            return []
        self._closed = True
        out: list[HttpExchange] = []
        if not self._upgraded:
            out.extend(self._on_requests(self._req._close(ts_ns)))
            out.extend(self._on_responses(self._res._close(ts_ns)))
        # never answered: the answer was lost in a gap, or the connection ended early
        for req in self._reqs:
            out.append(self._lone(req, None, "gap" if self._res_gapped else "incomplete"))
        for resp in self._resps:
            out.append(self._lone(None, resp, "gap" if self._req_gapped else "incomplete"))
        self._reqs.clear()
        self._resps.clear()
        return out

    # -- pairing ------------------------------------------------------------------------------

    def _on_requests(self, reqs: list[tuple[HttpRequest, int]]) -> list[HttpExchange]:
        out: list[HttpExchange] = []
        resps = self._resps
        for req, _ in reqs:
            if resps:
                self._pair(req, resps.popleft(), out)
            else:
                self._reqs.append(req)
        return out

    def _on_responses(self, resps: list[tuple[HttpResponse, int]]) -> list[HttpExchange]:
        out: list[HttpExchange] = []
        reqs = self._reqs
        for resp, link in resps:
            self._res_gapped = False
            if link < 0:  # answers no request we saw (lost in a gap, or before the capture)
                out.append(self._lone(None, resp, "gap" if self._req_gapped else "incomplete"))
                continue
            while link and reqs:  # requests whose answers were lost in a gap
                out.append(self._lone(reqs.popleft(), None, "gap"))
                link -= 1
            if reqs:
                self._pair(reqs.popleft(), resp, out)
            else:
                self._resps.append(resp)
        if self._extra:
            out.extend(self._extra)
            self._extra.clear()
        return out

    def _pair(self, req: HttpRequest, resp: HttpResponse, out: list[HttpExchange]) -> None:
        flags = req.flags | resp.flags if req.flags or resp.flags else set()
        out.append(HttpExchange(req, resp, flags))
        self.stats.exchanges += 1
        if "upgrade" in resp.flags:
            self._upgraded = True
            self._req.stop()

    def _lone(
        self, req: HttpRequest | None, resp: HttpResponse | None, why: str = "incomplete"
    ) -> HttpExchange:
        flags: set[str] = {why}
        if req is not None:
            flags |= req.flags
        if resp is not None:
            flags |= resp.flags
        self.stats.exchanges += 1
        return HttpExchange(req, resp, flags)
