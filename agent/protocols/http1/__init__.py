"""HTTP/1.x: sans-IO parsers (parse.py) and the request/response stitcher (stitch.py)."""

from agent.protocols.http1.parse import Http1Stats, ParseError, RequestParser, ResponseParser
from agent.protocols.http1.stitch import Http1Stitcher
from agent.protocols.http1.types import HttpExchange, HttpRequest, HttpResponse

__all__ = [
    "Http1Stats",
    "Http1Stitcher",
    "HttpExchange",
    "HttpRequest",
    "HttpResponse",
    "ParseError",
    "RequestParser",
    "ResponseParser",
]
