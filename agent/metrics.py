"""Prometheus metrics of a live capture, read from its counters at scrape time.

The kernel's per-CPU counters and the agent's own are cumulative already, so a
collector reports them as they are instead of mirroring every increment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from agent.capture import SyscallCapture


class CaptureCollector(Collector):
    def __init__(self, cap: SyscallCapture) -> None:
        self.cap = cap

    def collect(self) -> Iterator[Metric]:
        s = self.cap.summary()
        drops = CounterMetricFamily(
            "nodetap_drops", "Data lost or not copied, by cause", labels=["cause"]
        )
        for k, v in s.items():
            if k.startswith("drop_"):
                drops.add_metric([k[5:]], v)
        for k in ("orphan_records", "stream_gap_bytes"):
            drops.add_metric([k], s[k])
        yield drops
        events = CounterMetricFamily(
            "nodetap_events", "Ring-buffer records read, by kind", labels=["kind"]
        )
        events.add_metric(["data"], s["data_records"])
        events.add_metric(["control"], s["control_records"])
        events.add_metric(["gap"], s["gap_records"])
        yield events
        yield CounterMetricFamily(
            "nodetap_captured_bytes", "Payload bytes captured", value=s["data_bytes"]
        )
        rr = CounterMetricFamily(
            "nodetap_rrpairs", "RRPairs produced, by protocol", labels=["protocol"]
        )
        rr.add_metric(["http"], s["rrpairs"])
        yield rr
        flagged = CounterMetricFamily(
            "nodetap_rrpairs_flagged", "RRPairs carrying a loss flag", labels=["flag"]
        )
        for flag in ("incomplete", "gap", "truncated"):
            flagged.add_metric([flag], s[f"rrpairs_{flag}"])
        yield flagged
        conns = CounterMetricFamily(
            "nodetap_connections", "Connections seen, by outcome", labels=["outcome"]
        )
        for k in ("conns_tracked", "conns_preexisting", "conns_not_http", "conns_upgraded"):
            conns.add_metric([k[6:]], s[k])
        conns.add_metric(["filtered"], s["conns_filtered"] + s["conns_filtered_user"])
        yield conns
        yield GaugeMetricFamily(
            "nodetap_connections_open", "Connections tracked now", value=s["conns_open"]
        )
        yield GaugeMetricFamily(
            "nodetap_defer_backlog_bytes",
            "Captured bytes waiting to be decoded (deferred decoding)",
            value=s["defer_backlog_bytes"],
        )
        yield CounterMetricFamily(
            "nodetap_defer_paused_seconds",
            "Time the decoder waited for idle CPU (deferred decoding)",
            value=s["defer_paused_ms"] / 1000,
        )


def register_capture(cap: SyscallCapture) -> Callable[[], None]:
    """Expose a capture's counters in the default registry; returns the undo."""
    collector = CaptureCollector(cap)
    REGISTRY.register(collector)
    return lambda: REGISTRY.unregister(collector)
