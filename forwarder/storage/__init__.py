"""The forwarder's storage interface; the embedded SQLite store (the default) and the
NATS JetStream store (scale-out: several forwarders on one replicated stream) implement it.
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


def open_store_spec(
    spec: str,
    *,
    sync: str = "full",
    replicas: int | None = None,
    nats_creds: str | None = None,
    nats_tls_ca: str | None = None,
    retention_age: float | None = None,
    retention_bytes: int | None = None,
    dup_window: float | None = None,
) -> Store:
    """The store a --store value names: 'sqlite:DIR' or 'nats://HOST:PORT[,HOST:PORT...]'."""
    from nodetap.errors import ConfigError

    if spec.startswith("sqlite:"):
        if not spec[len("sqlite:") :]:
            raise ConfigError("--store sqlite: needs a directory: sqlite:DIR")
        return open_store(spec[len("sqlite:") :], sync=sync)
    if spec.startswith(("nats://", "tls://")):
        from forwarder.storage.jetstream import JetStreamStore
        from forwarder.storage.jetstream_stream import DUP_WINDOW_S

        return JetStreamStore(
            spec,
            replicas=replicas,
            creds=nats_creds,
            tls_ca=nats_tls_ca,
            max_age_s=retention_age,
            max_bytes=retention_bytes,
            dup_window=dup_window or DUP_WINDOW_S,
        )
    raise ConfigError(f"bad --store {spec!r}; use sqlite:DIR or nats://HOST:PORT[,HOST:PORT...]")


def open_store(data_dir: str, **opts: object) -> Store:
    """The default (embedded SQLite) store in data_dir."""
    from forwarder.storage.sqlite import SqliteStore

    return SqliteStore(data_dir, **opts)  # type: ignore[arg-type]
