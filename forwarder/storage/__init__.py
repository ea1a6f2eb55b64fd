"""The forwarder's storage interface; the embedded SQLite store implements it.

A distributed backend on an existing engine implements the same few methods.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from nodetap.v1 import forwarder_pb2 as fpb
from nodetap.v1 import rrpair_pb2 as pb


class Store(Protocol):
    """Durable, deduplicating storage of RRPairs plus snapshots."""

    def append(self, agent_id: str, seq: int, pairs: Sequence[pb.RRPair]) -> int | None:
        """Store one batch durably; return how many RRPairs were stored, None for a duplicate."""
        ...

    def query(self, flt: fpb.Filter, limit: int = 0) -> Iterator[pb.RRPair]:
        """Stored RRPairs matching flt (time range included), oldest first."""
        ...

    def create_snapshot(self, name: str, flt: fpb.Filter) -> fpb.Snapshot:
        """Freeze the RRPairs matching flt under a new id."""
        ...

    def list_snapshots(self) -> list[fpb.Snapshot]: ...

    def get_snapshot(self, snapshot_id: str) -> fpb.Snapshot | None: ...

    def snapshot_pairs(
        self, snapshot_id: str, flt: fpb.Filter, limit: int = 0
    ) -> Iterator[pb.RRPair]:
        """The RRPairs of a snapshot matching flt, oldest first."""
        ...

    def delete_snapshot(self, snapshot_id: str) -> bool: ...

    def enforce_retention(
        self, max_age_s: float | None, max_bytes: int | None, now_ns: int | None = None
    ) -> int:
        """Delete RRPairs older than max_age_s or beyond max_bytes (oldest first), except
        those held by a snapshot; return how many were deleted."""
        ...

    def stats(self) -> fpb.StatsResponse: ...

    def close(self) -> None: ...


def open_store(data_dir: str, **opts: object) -> Store:
    """The default (embedded SQLite) store in data_dir."""
    from forwarder.storage.sqlite import SqliteStore

    return SqliteStore(data_dir, **opts)  # type: ignore[arg-type]
