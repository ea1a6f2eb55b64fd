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

from agent.tls import coverage as tls_coverage

if TYPE_CHECKING:
    from agent.capture import SyscallCapture


# Losses, one metric family per unit (summing one family means something):
# nodetap_dropped_<unit>_total{cause}. The summary keys that count a loss but do not start
# with drop_ are listed here with their cause.
DROP_UNITS = ("bytes", "records", "calls", "pieces", "connections")
_OTHER_LOSSES = {"stream_gap_bytes": "stream_gap", "orphan_records": "orphan"}


def drop_unit_and_cause(key: str) -> tuple[str, str]:
    """'drop_iov_bytes' -> ('bytes', 'iov'); 'drop_conn_table_full' -> ('connections', ...)."""
    if key in _OTHER_LOSSES:
        return key.rsplit("_", 1)[1], _OTHER_LOSSES[key]
    name = key.removeprefix("drop_")
    for unit in DROP_UNITS:
        if name.endswith("_" + unit):
            return unit, name[: -len(unit) - 1]
    return "connections", name  # drop_conn_table_full: connections not tracked


def drops_by_unit(summary: dict[str, int]) -> dict[str, dict[str, int]]:
    """{unit: {cause: count}} of every loss counter in a capture's summary."""
    out: dict[str, dict[str, int]] = {unit: {} for unit in DROP_UNITS}
    for k, v in summary.items():
        if k.startswith("drop_") or k in _OTHER_LOSSES:
            unit, cause = drop_unit_and_cause(k)
            out[unit][cause] = out[unit].get(cause, 0) + v
    return out


class CaptureCollector(Collector):
    def __init__(self, cap: SyscallCapture) -> None:
        self.cap = cap

    def collect(self) -> Iterator[Metric]:
        s = self.cap.summary()
        for unit, causes in drops_by_unit(s).items():
            drops = CounterMetricFamily(
                f"nodetap_dropped_{unit}",
                f"{unit.capitalize()} lost or not copied, by cause",
                labels=["cause"],
            )
            for cause, v in sorted(causes.items()):
                drops.add_metric([cause], v)
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
        yield CounterMetricFamily(
            "nodetap_ringbuf_reserved_room_records",
            "Control records written into the ring-buffer room kept for them while data "
            "records were refused (bpf/common.h)",
            value=s["reserved_room_records"],
        )
        rr = CounterMetricFamily(
            "nodetap_rrpairs", "RRPairs produced, by protocol", labels=["protocol"]
        )
        rr.add_metric(["http"], s["rrpairs"])
        yield rr
        flagged = CounterMetricFamily(
            "nodetap_rrpairs_flagged", "RRPairs carrying a loss flag", labels=["flag"]
        )
        for flag in ("incomplete", "gap", "truncated", "noaddr"):
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
            "nodetap_ring_backlog_bytes",
            "Captured bytes in the kernel's ring buffer not read yet",
            value=s["ring_backlog_bytes"],
        )
        if self.cap.tls is not None:
            yield tls_coverage.metric(self.cap.tls)


def register_capture(cap: SyscallCapture) -> Callable[[], None]:
    """Expose a capture's counters in the default registry; returns the undo."""
    collector = CaptureCollector(cap)
    REGISTRY.register(collector)
    return lambda: REGISTRY.unregister(collector)
