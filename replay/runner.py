"""Coordinating a replay in-process: pre-flight, worker processes, the conntrack and CPU monitors,
the new-connection throttle, progress, and the report (the monitors are in replay/monitors.py).

    from replay.plan import Plan
    from replay.runner import run_replay
    from replay.report import table
    report = run_replay(Plan(capture="cap.jsonl", target="http://127.0.0.1:8080"))
    print(table(report))
"""

from __future__ import annotations

import json
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
from collections.abc import Callable, Iterable
from typing import Any

from nodetap.errors import ConfigError, HostError, InputError, NodetapError, PeerError
from replay.capture_file import CaptureInfo, scan
from replay.monitors import SAMPLE_S, ConntrackTrack, CpuTrack
from replay.plan import Plan
from replay.progress import Progress
from replay.report import build, merge
from replay.sides import describe, select_file
from replay.stats import peak_rss_kb
from replay.stream import QUEUE_LINES, Feeder, StreamSelector
from replay.worker import UNLIMITED, Shared, worker_main

log = logging.getLogger(__name__)


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
    stream: bool = True,
) -> dict[str, Any]:
    """Run a plan to the end (or until `stop` is set) and return the report (a dict).

    A plan whose capture is "-" reads stdin as a stream (live shadowing: each pair sent as it
    arrives, bounded memory; replay/stream.py); stream=False copies it to a file first.
    progress: show a live display on stderr (default: when stderr is a terminal).
    on_status: called about every 0.5 s with counters and pressure (for the gRPC agent).
    preflight_out: receives the pre-flight lines (default: stderr).
    """
    if plan.capture == "-" and stream:
        return _run(plan, progress, stop, on_status, preflight_out, stream=sys.stdin)
    tmp = _stdin_to_file(plan)
    say = preflight_out or (lambda s: print(s, file=sys.stderr))
    original = plan.capture
    selected = None
    try:
        selected, sel = select_file(plan.capture, plan.direction, plan.host, plan.port)
        if selected is not None:
            say(describe(sel))
            plan.capture = selected
        try:
            report = _run(plan, progress, stop, on_status, preflight_out)
        except InputError as e:  # name the capture given, not the selection's copy
            raise InputError(str(e).replace(selected or original, original)) from None
        report["selection"] = sel.to_dict()
        report["plan"]["capture"] = original
        return report
    finally:
        plan.capture = original
        for path in (tmp, selected):
            if path:
                os.unlink(path)


def _run(
    plan: Plan,
    show: bool | None,
    stop: threading.Event | None,
    on_status: Callable[[dict[str, Any]], None] | None,
    preflight_out: Callable[[str], None] | None,
    stream: Iterable[str] | None = None,
) -> dict[str, Any]:
    if stream is not None:
        if plan.loops != 1 or plan.timing == "original":
            raise ConfigError(
                "a streamed input ('-') is sent as it arrives, once: --loop and --timing original "
                "need a capture file (save the stream first)"
            )
        info = CaptureInfo(0, 0, 0)
    else:
        info = scan(plan.capture)
    if info.count == 0 and stream is None:
        raise InputError(f"capture {plan.capture} holds no RRPairs; capture some traffic first")
    plan.ts0_ns = plan.ts0_ns or info.first_ts_ns
    plan.count_hint = plan.count_hint or info.count
    plan.span_hint_s = plan.span_hint_s or info.span_s
    total, rate = planned(plan, info) if stream is None else (None, plan.rate)
    if plan.netns and not os.path.exists(f"/run/netns/{plan.netns}"):
        raise ConfigError(f"network namespace {plan.netns!r} not found; see 'ip netns list'")

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
    feeds: list[Any] = [ctx.Queue(QUEUE_LINES) for _ in range(nproc)] if stream is not None else []
    procs = [
        ctx.Process(
            target=worker_main,
            args=(plan_json, k, nproc, shared, out, feeds[k] if feeds else None),
            daemon=True,
        )
        for k in range(nproc)
    ]
    feeder = (
        Feeder(stream, feeds, StreamSelector(plan.direction, f"{plan.host}:{plan.port}"))
        if stream is not None
        else None
    )
    ct = ConntrackTrack(plan.netns, plan.conntrack_threshold, plan.conntrack_throttle)
    cpu = CpuTrack()
    results: dict[int, dict[str, Any]] = {}
    failures: list[str] = []
    bad_input: list[str] = []  # a worker's NodetapError (a malformed line): the run stops
    bad_peer: list[str] = []  # a worker's PeerError (an https:// target that is not TLS)
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
                raise HostError("replay processes did not start within 60 s") from None
            if kind == "ready":
                ready += 1
            elif kind == "input":
                raise NodetapError(payload)
            elif kind == "error":
                raise HostError(f"replay process {k} failed to start: {payload}")
        ct.open(shared.budget)
        cpu.open()
        start = time.monotonic() + 0.05
        shared.start_at.value = start
        shared.go.set()
        last_status = 0.0
        display.start()
        if feeder is not None:
            feeder.start()
        while len(results) + len(failures) < nproc:
            try:
                kind, k, payload = out.get(timeout=SAMPLE_S)
                if kind == "result":
                    results[k] = payload
                elif kind in ("input", "peer"):
                    (bad_input if kind == "input" else bad_peer).append(payload)
                    failures.append(f"process {k}: {payload}")
                    shared.stop.value = 1  # the others stop too: the capture needs fixing
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
        if feeder is not None:
            feeder.close()
        shared.stop.value = 1
        shared.go.set()
        for p in procs:
            p.join(timeout=5)
            if p.is_alive():
                p.kill()
                p.join()
        ct.close()
    if bad_input:
        raise InputError(bad_input[0])
    if bad_peer:
        raise PeerError(bad_peer[0])
    if not results:
        raise NodetapError(
            "replay failed: " + ("; ".join(failures) or "no process returned a result")
        )
    merged = merge(list(results.values()), plan.max_diffs)
    merged["maxrss_kb"].append(peak_rss_kb())
    plan_d = {
        k: v
        for k, v in json.loads(plan.to_json()).items()
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
    if feeder is not None:
        report["selection"] = feeder.sel.to_dict()
        if feeder.error:
            failures.append(feeder.error)
    if failures:
        report["failures"] = failures
    report["result"] = merged  # the raw merged result, for merging across agents
    return report


def _status(counts: list[int], t: float, ct: ConntrackTrack, cpu: CpuTrack) -> dict[str, Any]:
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
