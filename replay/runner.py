"""Coordinating a replay in-process: pre-flight, worker processes, the conntrack and CPU monitors,
the new-connection throttle, progress, and the report.

    from replay.plan import Plan
    from replay.runner import run_replay
    from replay.report import table
    report = run_replay(Plan(capture="cap.jsonl", target="http://127.0.0.1:8080"))
    print(table(report))
"""

from __future__ import annotations

import logging
import math
import multiprocessing as mp
import os
import queue
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nodetap.errors import NodetapError
from replay import cgroup
from replay.capture import CaptureInfo, scan
from replay.plan import Plan
from replay.progress import Progress
from replay.report import build, merge
from replay.stats import peak_rss_kb
from replay.worker import UNLIMITED, Shared, worker_main

log = logging.getLogger(__name__)
SAMPLE_S = 0.1


@dataclass
class _CtTrack:
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
class _CpuTrack:
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


def planned(plan: Plan, info: CaptureInfo) -> tuple[int | None, float | None]:
    """(requests planned or None when open-ended, planned rate per second or None for asap)."""
    total = info.count * plan.loops if plan.loops else None
    if plan.rate:
        rate: float | None = plan.rate
    elif plan.timing == "original" and info.span_s > 0:
        rate = (info.count - 1) / (info.span_s / plan.speed) if info.count > 1 else None
    else:
        rate = None
    if plan.duration and rate:
        in_time = math.ceil(plan.duration * rate - 1e-9)  # requests due before the deadline
        total = in_time if total is None else min(total, in_time)
    return total, rate


def _planned_new_conns(plan: Plan, rate: float | None) -> float | None:
    """New connections per second the plan opens (inf: as fast as possible; None: few)."""
    if plan.connection == "keepalive":
        return None
    return rate if rate else math.inf


def _stdin_to_file(plan: Plan) -> str | None:
    if plan.capture != "-":
        return None
    fd, path = tempfile.mkstemp(prefix="nodetap-replay-", suffix=".jsonl")
    with os.fdopen(fd, "w") as f:
        shutil.copyfileobj(sys.stdin, f)
    plan.capture = path
    return path


def run_replay(
    plan: Plan,
    *,
    progress: bool | None = None,
    stop: threading.Event | None = None,
    on_status: Callable[[dict[str, Any]], None] | None = None,
    preflight_out: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run a plan to the end (or until `stop` is set) and return the report (a dict).

    progress: show a live display on stderr (default: when stderr is a terminal).
    on_status: called about every 0.5 s with counters and pressure (for the gRPC agent).
    preflight_out: receives the pre-flight lines (default: stderr).
    """
    tmp = _stdin_to_file(plan)
    try:
        return _run(plan, progress, stop, on_status, preflight_out)
    finally:
        if tmp:
            os.unlink(tmp)


def _run(
    plan: Plan,
    show: bool | None,
    stop: threading.Event | None,
    on_status: Callable[[dict[str, Any]], None] | None,
    preflight_out: Callable[[str], None] | None,
) -> dict[str, Any]:
    info = scan(plan.capture)
    if info.count == 0:
        raise NodetapError(f"capture {plan.capture} holds no RRPairs; capture some traffic first")
    plan.ts0_ns = plan.ts0_ns or info.first_ts_ns
    plan.count_hint = plan.count_hint or info.count
    plan.span_hint_s = plan.span_hint_s or info.span_s
    total, rate = planned(plan, info)
    if plan.netns and not os.path.exists(f"/run/netns/{plan.netns}"):
        raise NodetapError(f"network namespace {plan.netns!r} not found; see 'ip netns list'")

    pf_dict = None
    say = preflight_out or (lambda s: print(s, file=sys.stderr))
    try:
        from netsetup.conntrack import preflight

        pf = preflight(plan.netns, _planned_new_conns(plan, rate), plan.conntrack_threshold)
        pf_dict = pf.to_dict()
        for line in pf.lines():
            say(line)
    except Exception as e:
        say(f"pre-flight: conntrack not readable ({e})")

    nproc = plan.processes or min(os.cpu_count() or 1, plan.vusers)
    nproc = max(1, min(nproc, plan.vusers))
    # fork: starts in milliseconds and needs no `if __name__ == "__main__"` guard in callers.
    ctx = mp.get_context("fork")
    shared = Shared(
        budget=ctx.Value("q", UNLIMITED),
        pressure=ctx.Value("b", 0, lock=False),
        stop=ctx.Value("b", 0, lock=False),
        go=ctx.Event(),
        start_at=ctx.Value("d", 0.0, lock=False),
        progress=ctx.Array("q", 3 * nproc, lock=False),
    )
    out: Any = ctx.Queue()
    plan_json = plan.to_json()
    procs = [
        ctx.Process(target=worker_main, args=(plan_json, k, nproc, shared, out), daemon=True)
        for k in range(nproc)
    ]
    ct = _CtTrack(plan.netns, plan.conntrack_threshold, plan.conntrack_throttle)
    cpu = _CpuTrack()
    results: dict[int, dict[str, Any]] = {}
    failures: list[str] = []
    display = Progress(total, enabled=show)
    for p in procs:
        p.start()
    try:
        ready = 0
        deadline = time.monotonic() + 60
        while ready < nproc:
            try:
                kind, k, payload = out.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise NodetapError("replay processes did not start within 60 s") from None
            if kind == "ready":
                ready += 1
            elif kind == "error":
                raise NodetapError(f"replay process {k} failed to start: {payload}")
        ct.open(shared.budget)
        cpu.open()
        start = time.monotonic() + 0.05
        shared.start_at.value = start
        shared.go.set()
        last_status = 0.0
        display.start()
        while len(results) + len(failures) < nproc:
            try:
                kind, k, payload = out.get(timeout=SAMPLE_S)
                if kind == "result":
                    results[k] = payload
                elif kind == "error":
                    failures.append(f"process {k}: {payload}")
                continue
            except queue.Empty:
                pass
            t = time.monotonic() - start
            ct.step(t, shared.budget, shared.pressure)
            cpu.step(t)
            counts = [sum(shared.progress[i::3]) for i in range(3)]
            display.update(
                counts[0], counts[1], counts[2], fill=ct.last.fill if ct.last is not None else None
            )
            if on_status is not None and time.monotonic() - last_status >= 0.5:
                last_status = time.monotonic()
                on_status(_status(counts, t, ct, cpu))
            if stop is not None and stop.is_set():
                shared.stop.value = 1
            if all(not p.is_alive() for p in procs) and out.empty():
                dead = [k for k, p in enumerate(procs) if k not in results and p.exitcode]
                failures += [f"process {k} exited with {procs[k].exitcode}" for k in dead]
                if len(results) + len(failures) < nproc:
                    time.sleep(SAMPLE_S)
                    if out.empty():
                        break
        elapsed = time.monotonic() - start
        ct.step(elapsed, shared.budget, shared.pressure)  # the run's last reading
        cpu.step(elapsed)
    finally:
        display.stop()
        shared.stop.value = 1
        shared.go.set()
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()
        ct.close()
    if not results:
        raise NodetapError(
            "replay failed: " + ("; ".join(failures) or "no process returned a result")
        )
    merged = merge(list(results.values()), plan.max_diffs)
    merged["maxrss_kb"].append(peak_rss_kb())
    plan_d = {
        k: v
        for k, v in __import__("json").loads(plan.to_json()).items()
        if k not in ("ts0_ns", "count_hint", "span_hint_s")
    }
    plan_d["processes"] = nproc
    report = build(
        merged,
        plan=plan_d,
        elapsed_s=elapsed,
        planned_total=total,
        planned_rate=rate,
        preflight=pf_dict,
        conntrack=ct.summary(merged["pool"]),
        cpu=cpu.summary(),
    )
    if failures:
        report["failures"] = failures
    report["result"] = merged  # the raw merged result, for merging across agents
    return report


def _status(counts: list[int], t: float, ct: _CtTrack, cpu: _CpuTrack) -> dict[str, Any]:
    last = ct.last
    return {
        "elapsed_s": t,
        "sent": counts[0],
        "errors": counts[1],
        "mismatched": counts[2],
        "conntrack_count": last.count if last is not None else 0,
        "conntrack_max": last.max if last is not None else 0,
        "conntrack_throttled": ct.throttle_last is not None and t - ct.throttle_last < 1.0,
        "cpu_throttled_periods": (cpu.prev.nr_throttled - cpu.first.nr_throttled)
        if cpu.prev is not None and cpu.first is not None
        else 0,
    }
