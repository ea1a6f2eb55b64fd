"""What the forwarder sink counts: event counts for ``ForwarderSink.counters()`` and the
matching Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter

SINK_PAIRS = Counter(
    "nodetap_sink_pairs_total",
    "RRPairs through the forwarder sink, by event (put, acked, spooled, dropped_*)",
    ["event"],
)
SINK_BATCHES = Counter(
    "nodetap_sink_batches_total", "Batches by event (sent, resent, acked, duplicate)", ["event"]
)
SINK_SPOOL_CORRUPT = Counter(
    "nodetap_sink_spool_corrupt_records_total", "Corrupt spool records skipped on start"
)
SINK_RECONNECTS = Counter("nodetap_sink_reconnects_total", "Ingest streams that failed")

COUNTER_NAMES = (
    "put",  # RRPairs given to put()
    "acked",  # RRPairs the forwarder acknowledged as stored
    "batches_sent",  # batches sent for the first time
    "resent",  # batches sent again after a reconnect (or after a restart, from the outbox)
    "duplicates",  # acknowledgements saying the batch was already stored
    "spooled",  # RRPairs written to the outbox on disk
    "recovered",  # RRPairs read back from the outbox of an earlier run
    "spool_corrupt",  # corrupt outbox records skipped on start
    "dropped_spool_full",  # RRPairs dropped: memory queue and outbox both full
    "dropped_queue_full",  # RRPairs dropped: memory queue full and no outbox configured
    "dropped_too_large",  # RRPairs bigger than the message size limit
    "dropped_at_close",  # RRPairs unacknowledged at close() with no outbox to keep them
    "reconnects",  # Ingest streams that ended in an error
)


class SinkCounters:
    """Event counts by name (COUNTER_NAMES); the caller holds the sink's lock."""

    def __init__(self) -> None:
        self.counts = dict.fromkeys(COUNTER_NAMES, 0)

    def __getitem__(self, name: str) -> int:
        return self.counts[name]

    def count(self, name: str, n: int = 1) -> None:
        self.counts[name] += n
        if name in ("put", "acked", "spooled", "recovered") or name.startswith("dropped_"):
            SINK_PAIRS.labels(name).inc(n)
        elif name in ("batches_sent", "resent", "duplicates"):
            SINK_BATCHES.labels(name).inc(n)
        elif name == "spool_corrupt":
            SINK_SPOOL_CORRUPT.inc(n)
        elif name == "reconnects":
            SINK_RECONNECTS.inc(n)
