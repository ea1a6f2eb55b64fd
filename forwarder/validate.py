"""Checks of what a gRPC client sends before it reaches a store: one clear INVALID_ARGUMENT
instead of an overflow deep in SQLite (UNKNOWN) or a store error the agent would retry forever.

SQLite integers are signed 64-bit and RRPair times are indexed in nanoseconds, so a timestamp
must lie where signed 64-bit nanoseconds since 1970 reach (years 1678 to 2261).
"""

from __future__ import annotations

from collections.abc import Iterable

from google.protobuf.timestamp_pb2 import Timestamp

from nodetap.v1 import forwarder_pb2 as fpb
from nodetap.v1 import rrpair_pb2 as pb

MAX_SEQ = (1 << 63) - 1
_MAX_SECONDS = (1 << 63) // 1_000_000_000 - 1  # 2262-04-11: nanoseconds still fit in int64
_MIN_SECONDS = -_MAX_SECONDS


def bad_timestamp(ts: Timestamp, what: str) -> str | None:
    """Why ts is out of range (None when it is fine)."""
    if not _MIN_SECONDS <= ts.seconds <= _MAX_SECONDS or not 0 <= ts.nanos < 1_000_000_000:
        return (
            f"{what} out of range (seconds={ts.seconds}, nanos={ts.nanos}); give a time "
            "between the years 1678 and 2261"
        )
    return None


def bad_filter(flt: fpb.Filter) -> str | None:
    """Why a selection cannot be served (None when it can)."""
    for name in ("since", "until"):
        if flt.HasField(name):
            problem = bad_timestamp(getattr(flt, name), f"filter.{name}")
            if problem:
                return problem
    return None


def bad_pairs(pairs: Iterable[pb.RRPair]) -> str | None:
    for i, pair in enumerate(pairs):
        problem = bad_timestamp(pair.ts, f"pairs[{i}].ts")
        if problem:
            return problem
    return None


def bad_batch(batch: fpb.IngestBatch) -> str | None:
    """Why an Ingest batch is refused (None when it is fine)."""
    if not batch.agent_id or batch.seq == 0:
        return "batch needs agent_id and seq > 0"
    if batch.seq > MAX_SEQ:
        return f"batch seq {batch.seq} too large; number batches from 1 to 2^63-1"
    return bad_pairs(batch.pairs)
