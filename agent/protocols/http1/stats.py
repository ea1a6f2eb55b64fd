"""The counters of the HTTP/1.x parsers (one direction, or both when a stitcher shares them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class Http1Stats:
    """Counters of one parser, or of both directions when a stitcher shares them."""

    messages: int = 0  # complete messages returned (1xx interim responses not included)
    interim: int = 0  # 1xx interim responses skipped
    parse_errors: int = 0
    resyncs: int = 0  # times a message start was found after skipping bytes
    skipped_bytes: int = 0  # bytes skipped while out of sync
    chunk_resyncs: int = 0  # chunked framing found again after a gap (chunk_resync.py)
    gaps: int = 0
    gap_bytes: int = 0
    truncated: int = 0  # messages whose body was cut to max_body
    incomplete: int = 0  # messages cut short (close, gap, error)
    exchanges: int = 0  # set by the stitcher
    fast_chunks: int = 0  # chunks parsed by the llhttp fast path (the rest: own framing)
