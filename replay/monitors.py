"""What a replay run watches while it sends: the conntrack table (fill, drops, the
new-connection throttle's budget) and this process's CPU throttling in its cgroup. The
runner (replay/runner.py) samples both every SAMPLE_S seconds and puts their summaries in the
report."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from replay import cgroup

log = logging.getLogger(__name__)
SAMPLE_S = 0.1


@dataclass
class ConntrackTrack:
    """The conntrack side of a run: samples, the throttle, the timeline."""

    netns: str | None
    threshold: float
    throttle: bool
    mon: Any = None
    reason: str = ""
    first: Any = None
    last: Any = None
    peak_count: int = 0
    peak_fill: float = 0.0
    timeline: list[dict[str, Any]] = field(default_factory=list)
    drops_by_sec: dict[int, int] = field(default_factory=dict)
    throttled_samples: int = 0
    throttle_first: float | None = None
    throttle_last: float | None = None
    _prev_drops: int = 0
    _last_reap: float = 0.0
    reaped: int = 0
    _last_sec: int = -1

    def open(self, budget: Any) -> None:
        try:
            from netsetup.conntrack import Monitor

            self.mon = Monitor(self.netns)
            self.first = self.last = self.mon.sample()
            self._prev_drops = self._drops(self.first)
            self.peak_count, self.peak_fill = self.first.count, self.first.fill
        except Exception as e:  # no nf_conntrack, no permission: replay runs unwatched
            self.mon = None
            self.reason = f"conntrack not watched: {e}"
            return
        if self.throttle and self.first.max:
            # The first connections already count against what the table holds now.
            budget.value = int(self.first.max * self.threshold) - self.first.count

    @staticmethod
    def _drops(s: Any) -> int:
        return int(s.insert_failed + s.drop + s.early_drop)

    def step(self, t: float, budget: Any, pressure: Any) -> None:
        if self.mon is None:
            return
        try:
            s = self.mon.sample()
        except Exception as e:
            log.debug("conntrack sample: %s", e)
            return
        self.last = s
        self.peak_count = max(self.peak_count, s.count)
        self.peak_fill = max(self.peak_fill, s.fill)
        sec = int(t)
        d = self._drops(s)
        if d > self._prev_drops:
            self.drops_by_sec[sec] = self.drops_by_sec.get(sec, 0) + d - self._prev_drops
        self._prev_drops = d
        if self.throttle and s.max:
            limit = int(s.max * self.threshold)
            left = limit - s.count
            budget.value = left
            pressure.value = 1 if left < limit * 0.1 else 0
            if left <= 0 and time.monotonic() - self._last_reap > 0.25:
                # Expired entries may still be counted: have the kernel free them.
                self._last_reap = time.monotonic()
                try:
                    self.mon.reap()
                    s2 = self.mon.sample()
                    left = limit - s2.count
                    budget.value = left
                    self.reaped += max(0, s.count - s2.count)
                except Exception as e:
                    log.debug("conntrack reap: %s", e)
            if left <= 0:
                self.throttled_samples += 1
                self.throttle_first = t if self.throttle_first is None else self.throttle_first
                self.throttle_last = t
        if sec != self._last_sec:
            self._last_sec = sec
            self.timeline.append({"t": round(t, 2), **s.to_dict()})

    def close(self) -> None:
        if self.mon is not None:
            self.mon.close()

    def summary(self, pool: dict[str, Any]) -> dict[str, Any]:
        if self.first is None:
            return {"available": False, "netns": self.netns or "host", "reason": self.reason}
        keys = ("insert_failed", "drop", "early_drop", "search_restart")
        return {
            "available": True,
            "netns": self.netns or "host",
            "max": self.last.max,
            "threshold": self.threshold,
            "start_count": self.first.count,
            "end_count": self.last.count,
            "peak_count": self.peak_count,
            "peak_fill": round(self.peak_fill, 4),
            "delta": {k: getattr(self.last, k) - getattr(self.first, k) for k in keys},
            "drops_by_sec": {str(k): v for k, v in self.drops_by_sec.items()},
            "throttle": {
                "enabled": self.throttle,
                "throttled_s": round(self.throttled_samples * SAMPLE_S, 2),
                "from_s": self.throttle_first,
                "to_s": self.throttle_last,
                "delayed_connections": pool.get("gate_waits", 0),
                "delay_s": round(pool.get("gate_wait_s", 0.0), 3),
                "slow_connects": pool.get("slow_connects", 0),
                "expired_entries_reaped": self.reaped,
                "kept_open_under_pressure": pool.get("kept_open_under_pressure", 0),
            },
            "timeline": self.timeline,
        }


@dataclass
class CpuTrack:
    mon: cgroup.CpuThrottleMonitor = field(default_factory=cgroup.CpuThrottleMonitor)
    first: Any = None
    prev: Any = None
    throttled_secs: set[int] = field(default_factory=set)
    timeline: list[dict[str, Any]] = field(default_factory=list)

    def open(self) -> None:
        self.first = self.prev = self.mon.sample()

    def step(self, t: float) -> None:
        s = self.mon.sample()
        if s is None or self.prev is None:
            return
        if s.nr_throttled > self.prev.nr_throttled:
            self.throttled_secs.add(int(t))
            self.timeline.append(
                {
                    "t": round(t, 2),
                    "nr_throttled": s.nr_throttled - self.first.nr_throttled,
                    "throttled_s": round(s.throttled_s - self.first.throttled_s, 4),
                }
            )
        self.prev = s

    def summary(self) -> dict[str, Any]:
        if self.first is None or self.prev is None:
            return {"version": "", "reason": "no cpu.stat for this process's cgroup"}
        return {
            "cgroup": self.mon.cgroup,
            "version": self.mon.version,
            "quota": cgroup.quota(),
            "nr_periods": self.prev.nr_periods - self.first.nr_periods,
            "nr_throttled": self.prev.nr_throttled - self.first.nr_throttled,
            "throttled_s": round(self.prev.throttled_s - self.first.throttled_s, 4),
            "throttled_secs": sorted(self.throttled_secs),
            "timeline": self.timeline[-600:],
        }
