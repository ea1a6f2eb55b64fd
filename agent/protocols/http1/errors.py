"""Errors of the HTTP/1.x parsers: the one a caller may see, and the one that stays inside.

Bad input never raises out of a parser unless it was made with ``raise_errors=True``
(recovery.py turns each ``InvalidBytes`` into a flag, a counter and a resynchronisation).
"""

from __future__ import annotations

from agent.protocols.http1.types import HttpRequest, HttpResponse


class ParseError(Exception):
    """Bytes that are not valid HTTP/1.x (raised only with ``raise_errors=True``).

    ``messages``: those completed before it, then the one it hit (flagged "parse_error") if
    that one's start line was valid.
    """

    def __init__(self, reason: str, messages: list[HttpRequest] | list[HttpResponse]) -> None:
        super().__init__(reason)
        self.reason = reason
        self.messages = messages


class InvalidBytes(Exception):
    """Inside the parsers: invalid bytes at ``pos`` of the current buffer."""

    def __init__(self, reason: str, pos: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.pos = pos
