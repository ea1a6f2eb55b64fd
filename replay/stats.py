"""Mergeable, bounded-memory statistics: a log-bucket histogram (1% resolution) and counters."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

_BASE = math.log(1.01)


def bucket(v: float) -> int:
    return int(math.log(v) / _BASE) if v >= 1e-9 else -3000


@dataclass(slots=True)
class Histogram:
    """Values >= 0 in buckets of 1% width; constant memory whatever the number of values."""

    buckets: Counter[int] = field(default_factory=Counter)
    count: int = 0
    total: float = 0.0
    max: float = 0.0
    min: float = math.inf

    def add(self, v: float) -> None:
        self.add_in(bucket(v), v)

    def add_in(self, b: int, v: float) -> None:
        """Add v whose bucket(v) is b (computed once for several histograms)."""
        self.buckets[b] += 1
        self.count += 1
        self.total += v
        if v > self.max:
            self.max = v
        if v < self.min:
            self.min = v

    def merge(self, other: Histogram) -> None:
        self.buckets.update(other.buckets)
        self.count += other.count
        self.total += other.total
        self.max = max(self.max, other.max)
        self.min = min(self.min, other.min)

    def quantile(self, q: float) -> float:
        if not self.count:
            return 0.0
        rank = q * self.count
        seen = 0
        for b in sorted(self.buckets):
            seen += self.buckets[b]
            if seen >= rank:
                return min(self.max, math.exp((b + 0.5) * _BASE)) if b > -3000 else 0.0
        return self.max

    def summary(self, scale: float = 1.0, digits: int = 3) -> dict[str, float]:
        """p50/p90/p99/max/mean (values multiplied by scale)."""
        if not self.count:
            return {"count": 0}
        return {
            "count": self.count,
            "p50": round(self.quantile(0.5) * scale, digits),
            "p90": round(self.quantile(0.9) * scale, digits),
            "p99": round(self.quantile(0.99) * scale, digits),
            "max": round(self.max * scale, digits),
            "mean": round(self.total / self.count * scale, digits),
        }

    def to_wire(self) -> dict[str, Any]:
        return {
            "b": dict(self.buckets),
            "n": self.count,
            "t": self.total,
            "mx": self.max,
            "mn": self.min if self.count else 0.0,
        }

    @classmethod
    def from_wire(cls, d: dict[str, Any]) -> Histogram:
        h = cls(
            Counter({int(k): int(v) for k, v in d["b"].items()}),
            int(d["n"]),
            float(d["t"]),
            float(d["mx"]),
            float(d["mn"]) if d["n"] else math.inf,
        )
        return h


def peak_rss_kb() -> int:
    """This process's peak resident memory in KiB, since it last called exec().

    Not getrusage's ru_maxrss: Linux keeps that across fork() and execve(), so a replay
    started by a large process would report its parent's peak instead of its own.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
