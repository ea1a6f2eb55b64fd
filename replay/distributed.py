"""Coordinating a distributed replay: a plan split across remote replay services
(replay/remote_service.py, `nodetap replay-agent`), their reports merged.

Service k of n gets the pairs with index i % n == k, the plan's rate divided by n, its share of
the virtual users, and the capture's first timestamp (so that every service keeps the recorded
timing on the same clock). A service whose stream breaks is reported as lost, with the share of
the plan it did not run. (The report calls them "agents", as the command line does.)
"""

from __future__ import annotations

import copy
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc

from nodetap import jsonl, transport
from nodetap.errors import ConfigError, InputError, PeerError
from nodetap.transport import ClientTLS
from nodetap.v1 import replay_pb2 as rpb
from nodetap.v1 import replay_pb2_grpc as rgrpc
from replay.capture_file import scan
from replay.plan import Plan
from replay.report import build, merge
from replay.runner import planned
from replay.sides import describe, select_file


@dataclass
class RemoteShare:
    """One share of the plan, run by the remote replay service at address."""

    address: str
    share: int
    planned: int
    state: str = "pending"
    last: rpb.RunStatus | None = None
    report: dict[str, Any] | None = None
    error: str = ""
    statuses: int = field(default=0)
    bad_input: str = ""  # a capture line that is not an RRPair: the run is refused

    @property
    def lost(self) -> bool:
        return self.state == "lost"

    def summary(self) -> dict[str, Any]:
        sent = (
            int(self.report["requests"]["sent"])
            if self.report
            else (self.last.sent if self.last else 0)
        )
        out: dict[str, Any] = {
            "address": self.address,
            "share": self.share,
            "state": self.state,
            "planned": self.planned,
            "sent": sent,
            "lost": self.lost,
        }
        if self.lost:
            out["not_run"] = max(0, self.planned - sent)
            out["not_run_share"] = round(out["not_run"] / max(1, self.planned), 4)
        if self.error:
            out["error"] = self.error
        if self.last is not None:
            out["conntrack"] = {
                "count": self.last.conntrack_count,
                "max": self.last.conntrack_max,
                "throttled": self.last.conntrack_throttled,
            }
            out["cpu_throttled_periods"] = self.last.cpu_throttled_periods
        return out


def _pairs(plan: Plan, share: int, shares: int, name: str) -> Iterator[rpb.StartRequest]:
    """The pairs of one share as Start messages; a bad line raises CaptureFormatError naming
    the line of the capture `name`."""
    i = -1
    with open(plan.capture, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            i += 1
            if i % shares == share:
                yield rpb.StartRequest(pair=jsonl.loads(line, f"{name}:{lineno}"))


def _share_plan(plan: Plan, share: int, shares: int, count: int) -> Plan:
    p = copy.deepcopy(plan)
    p.capture = ""
    p.rate = plan.rate / shares if plan.rate else None
    p.vusers = max(1, plan.vusers // shares + (share < plan.vusers % shares))
    p.count_hint = count
    return p


def _drive(
    run: RemoteShare,
    plan: Plan,
    shares: int,
    count: int,
    token: str | None,
    tls: ClientTLS | None,
    name: str,
) -> None:
    md = transport.bearer_metadata(token)
    try:
        # No keepalive pings: a host busy replaying may answer them late, and that is no loss.
        with transport.channel(run.address, tls=tls, keepalive=False) as ch:
            stub = rgrpc.ReplayAgentStub(ch)  # type: ignore[no-untyped-call]
            p = _share_plan(plan, run.share, shares, count)
            spec = rpb.PlanSpec(plan_json=p.to_json(), share=run.share, shares=shares)

            def stream() -> Iterator[rpb.StartRequest]:
                yield rpb.StartRequest(plan=spec)
                try:
                    yield from _pairs(plan, run.share, shares, name)
                except jsonl.CaptureFormatError as e:
                    run.bad_input = f"{e}; fix or remove that line"
                    raise  # grpc cancels the Start call: the agent runs nothing

            # The agent chooses the run's id; only this caller learns it.
            started = stub.Start(stream(), metadata=md, timeout=300)
            run.state = "running"
            for st in stub.Watch(rpb.WatchRequest(run_id=started.run_id), metadata=md):
                run.last = st
                run.statuses += 1
                if st.state == rpb.RUN_STATE_DONE or st.state == rpb.RUN_STATE_STOPPED:
                    run.report = json.loads(st.report_json) if st.report_json else None
                    run.state = "done" if st.state == rpb.RUN_STATE_DONE else "stopped"
                    return
                if st.state == rpb.RUN_STATE_FAILED:
                    run.state, run.error = "failed", st.error
                    return
            run.state, run.error = "lost", "status stream ended before the run did"
    except grpc.RpcError as e:
        code = e.code()
        if code in (
            grpc.StatusCode.UNAUTHENTICATED,
            grpc.StatusCode.PERMISSION_DENIED,
            grpc.StatusCode.INVALID_ARGUMENT,
            grpc.StatusCode.RESOURCE_EXHAUSTED,
        ):
            run.state, run.error = "refused", f"{code.name}: {e.details()}"
        else:
            run.state, run.error = "lost", f"{code.name}: {e.details()}"


def run_distributed(
    plan: Plan, agents: list[str], token: str | None = None, tls: ClientTLS | None = None
) -> dict[str, Any]:
    """Run plan across the remote replay services at agents (HOST:PORT each); the merged
    report names each of them and any it lost."""
    if not agents:
        raise ConfigError("--agents is empty; give HOST:PORT of at least one replay agent")
    original = plan.capture
    selected, sel = select_file(plan.capture, plan.direction, plan.host, plan.port)
    try:
        if selected is not None:
            print(describe(sel), file=sys.stderr)
            plan.capture = selected
        try:
            report = _run_distributed(plan, agents, token, tls, original)
        except InputError as e:  # name the capture given, not the selection's copy
            raise InputError(str(e).replace(selected or original, original)) from None
        report["selection"] = sel.to_dict()
        return report
    finally:
        plan.capture = original
        if selected is not None:
            os.unlink(selected)


def _run_distributed(
    plan: Plan, agents: list[str], token: str | None, tls: ClientTLS | None, name: str
) -> dict[str, Any]:
    info = scan(plan.capture)
    if info.count == 0:
        raise InputError(f"capture {plan.capture} holds no RRPairs; capture some traffic first")
    plan.ts0_ns = info.first_ts_ns
    plan.span_hint_s = info.span_s
    total, rate = planned(plan, info)
    n = len(agents)
    counts = [info.count // n + (k < info.count % n) for k in range(n)]
    loops = plan.loops or 1
    runs = [RemoteShare(a, k, counts[k] * loops) for k, a in enumerate(agents)]
    threads = [
        threading.Thread(
            target=_drive, args=(r, plan, n, counts[r.share], token, tls, name), daemon=True
        )
        for r in runs
    ]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - t0
    bad = [r.bad_input for r in runs if r.bad_input]
    if bad:
        raise InputError(bad[0])
    refused = [r for r in runs if r.state == "refused"]
    if refused and len(refused) == len(runs):
        raise PeerError(
            "agents refused the plan: " + "; ".join(f"{r.address}: {r.error}" for r in refused)
        )
    reports = [r.report for r in runs if r.report]
    results = [rep["result"] for rep in reports if "result" in rep]
    merged = merge(results, plan.max_diffs) if results else merge([_empty()], plan.max_diffs)
    report = build(
        merged,
        plan=json.loads(plan.to_json()),
        elapsed_s=elapsed,
        planned_total=total,
        planned_rate=rate,
        preflight=None,
        conntrack=_merge_conntrack([rep.get("conntrack", {}) for rep in reports]),
        cpu=_merge_cpu([rep.get("cpu", {}) for rep in reports]),
        agents=[r.summary() for r in runs],
    )
    if not plan.duration and total is not None:
        report["requests"]["unsent"] = total - report["requests"]["sent"]
    failed = [r for r in runs if r.state in ("lost", "failed", "refused")]
    if failed:
        report["failures"] = [f"agent {r.address} {r.state}: {r.error}" for r in failed]
    report["result"] = merged
    return report


def _empty() -> dict[str, Any]:
    from replay.stats import Histogram

    h = Histogram().to_wire()
    return {"latency": h, "lag": h}


def _merge_conntrack(parts: list[dict[str, Any]]) -> dict[str, Any]:
    avail = [p for p in parts if p.get("available")]
    if not avail:
        return {"available": False, "netns": "agents", "reason": "no agent watched conntrack"}
    keys = ("insert_failed", "drop", "early_drop", "search_restart")
    th_keys = ("throttled_s", "delayed_connections", "delay_s", "slow_connects")
    return {
        "available": True,
        "netns": ", ".join(sorted({p["netns"] for p in avail})),
        "max": max(p["max"] for p in avail),
        "peak_count": max(p["peak_count"] for p in avail),
        "peak_fill": max(p["peak_fill"] for p in avail),
        "delta": {k: sum(p["delta"][k] for p in avail) for k in keys},
        "drops_by_sec": {},
        "throttle": {k: sum(p["throttle"].get(k, 0) for p in avail) for k in th_keys},
        "per_agent": avail,
    }


def _merge_cpu(parts: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [p for p in parts if p.get("version")]
    if not ok:
        return {"version": "", "reason": "no agent read its cgroup"}
    return {
        "version": ",".join(sorted({p["version"] for p in ok})),
        "quota": ",".join(sorted({str(p.get("quota")) for p in ok})),
        "nr_throttled": sum(p.get("nr_throttled", 0) for p in ok),
        "throttled_s": sum(p.get("throttled_s", 0.0) for p in ok),
        "throttled_secs": sorted({s for p in ok for s in p.get("throttled_secs", [])}),
        "per_agent": ok,
    }
