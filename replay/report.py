"""The replay report: merging worker (and agent) results, the JSON document, the human table."""

from __future__ import annotations

from collections import Counter
from typing import Any

from replay.stats import Histogram

CT_ERROR_KINDS = ("timeout", "refused", "reset")


def merge(results: list[dict[str, Any]], max_samples: int = 50) -> dict[str, Any]:
    """Sum worker results (their wire form); histograms merged, samples capped."""
    out: dict[str, Any] = {
        "sent": 0,
        "responses": 0,
        "compared": 0,
        "mismatched": 0,
        "unsent": 0,
        "cpu_s": 0.0,
        "maxrss_kb": [],
        "samples": [],
        "first_send": None,
        "last_send": 0.0,
    }
    counters: dict[str, Counter[str]] = {
        k: Counter()
        for k in ("errors", "error_secs", "secs", "statuses", "mismatch_kinds", "pool", "unsafe")
    }
    lat, lag = Histogram(), Histogram()
    lat_secs: dict[str, Histogram] = {}
    for r in results:
        for k in ("sent", "responses", "compared", "mismatched", "unsent", "cpu_s"):
            out[k] += r.get(k, 0)
        mr = r.get("maxrss_kb", 0)
        out["maxrss_kb"] += mr if isinstance(mr, list) else [mr]
        for k, c in counters.items():
            c.update({str(a): b for a, b in (r.get(k) or {}).items()})
        lat.merge(Histogram.from_wire(r["latency"]))
        lag.merge(Histogram.from_wire(r["lag"]))
        for s, h in (r.get("latency_secs") or {}).items():
            lat_secs.setdefault(s, Histogram()).merge(Histogram.from_wire(h))
        room = max_samples - len(out["samples"])
        out["samples"] += (r.get("samples") or [])[: max(0, room)]
        if r.get("sent"):
            fs = r.get("first_send", 0.0)
            out["first_send"] = fs if out["first_send"] is None else min(out["first_send"], fs)
            out["last_send"] = max(out["last_send"], r.get("last_send", 0.0))
    for k, c in counters.items():
        out[k] = dict(c)
    out["first_send"] = out["first_send"] or 0.0
    out["latency"], out["lag"] = lat.to_wire(), lag.to_wire()
    out["latency_secs"] = {s: h.to_wire() for s, h in lat_secs.items()}
    return out


def attribute_conntrack(
    error_secs: dict[str, int], ct_secs: dict[int, int], window: int = 3
) -> Counter[str]:
    """Errors (timeout/refused/reset) in seconds when the kernel's drop or insert_failed counters
    rose (within `window` seconds before, or the second after): their kind, counted."""
    bad = {s for s, d in ct_secs.items() if d > 0}
    out: Counter[str] = Counter()
    for key, n in error_secs.items():
        sec_s, kind = key.split(":", 1)
        sec = int(sec_s)
        if kind in CT_ERROR_KINDS and any(s in bad for s in range(sec - 1, sec + window + 1)):
            out[kind] += n
    return out


def build(
    merged: dict[str, Any],
    *,
    plan: dict[str, Any],
    elapsed_s: float,
    planned_total: int | None,
    planned_rate: float | None,
    preflight: dict[str, Any] | None,
    conntrack: dict[str, Any],
    cpu: dict[str, Any],
    agents: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    lat = Histogram.from_wire(merged["latency"])
    lag = Histogram.from_wire(merged["lag"])
    sent = merged["sent"]
    span = max(1e-9, merged["last_send"] - merged["first_send"])
    achieved = (sent - 1) / span if sent > 1 else float(sent)
    # Latency measured while the agent's cgroup was being throttled is not the server's.
    throttled = set(cpu.get("throttled_secs", []))
    reliable = Histogram()
    unreliable = 0
    for s, h in merged["latency_secs"].items():
        hist = Histogram.from_wire(h)
        if int(s) in throttled:
            unreliable += hist.count
        else:
            reliable.merge(hist)
    ct_by_sec = {int(k): v for k, v in conntrack.get("drops_by_sec", {}).items()}
    ct_errors = attribute_conntrack(merged["error_secs"], ct_by_sec)
    errors = dict(merged["errors"])
    report: dict[str, Any] = {
        "plan": plan,
        "requests": {
            "planned": planned_total,
            "sent": sent,
            "responses": merged["responses"],
            "unsent": (planned_total - sent) if planned_total is not None else merged["unsent"],
            "statuses": merged["statuses"],
            # Recorded requests not sent because their bytes would inject into the target's
            # parser (CR/LF in the request line or a header; replay/model.py): why, counted.
            "not_sent_unsafe": merged.get("unsafe", {}),
        },
        "rate": {
            "planned_per_s": round(planned_rate, 2) if planned_rate else None,
            "achieved_per_s": round(achieved, 2),
            "ratio": round(achieved / planned_rate, 4) if planned_rate else None,
            "elapsed_s": round(elapsed_s, 3),
            "schedule_lag_ms": lag.summary(1000),
        },
        "latency_ms": lat.summary(1000),
        "latency_reliable": unreliable == 0,
        "latency_unreliable_requests": unreliable,
        # Latency of the seconds in which the agent was not throttled: the server's.
        "latency_ms_while_not_throttled": reliable.summary(1000),
        "errors": {
            "total": sum(errors.values()),
            "by_kind": errors,
            "attributable_to_conntrack": dict(ct_errors),
        },
        "comparison": {
            "compared": merged["compared"],
            "mismatched": merged["mismatched"],
            "by_kind": merged["mismatch_kinds"],
            "samples": merged["samples"],
        },
        "connections": merged["pool"],
        "conntrack": conntrack,
        "cpu": cpu,
        "memory": {
            "peak_rss_kb_per_process": merged["maxrss_kb"],
            "peak_rss_kb_max": max(merged["maxrss_kb"] or [0]),
        },
        "replay_cpu_s": round(merged["cpu_s"], 3),
    }
    if preflight is not None:
        report["preflight"] = preflight
    if agents is not None:
        report["agents"] = agents
    return report


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)


def table(r: dict[str, Any]) -> str:
    """The report as a human-readable table (plain text, fixed columns)."""
    rows: list[tuple[str, str]] = []
    req, rate, lat = r["requests"], r["rate"], r["latency_ms"]
    rows.append(("target", r["plan"].get("target", "")))
    rows.append(
        (
            "requests",
            f"{req['sent']} sent / {_fmt(req['planned'])} planned, "
            f"{req['responses']} answered, {req['unsent']} unsent",
        )
    )
    rows.append(
        ("statuses", ", ".join(f"{k}: {v}" for k, v in sorted(req["statuses"].items())) or "-")
    )
    unsafe = req.get("not_sent_unsafe") or {}
    if unsafe:
        rows.append(
            (
                "not sent (unsafe)",
                ", ".join(f"{k}: {v}" for k, v in sorted(unsafe.items())),
            )
        )
    ratio = f" ({100 * rate['ratio']:.1f}% of plan)" if rate["ratio"] else ""
    rows.append(
        (
            "rate",
            f"{_fmt(rate['achieved_per_s'])}/s achieved, "
            f"{_fmt(rate['planned_per_s'])}/s planned{ratio}",
        )
    )
    if lat.get("count"):
        mark = "" if r["latency_reliable"] else "  UNRELIABLE (agent CPU-throttled)"
        rows.append(
            (
                "latency ms",
                f"p50 {lat['p50']}  p90 {lat['p90']}  p99 {lat['p99']}  max {lat['max']}{mark}",
            )
        )
    lag = rate["schedule_lag_ms"]
    if lag.get("count"):
        rows.append(("schedule lag ms", f"p50 {lag['p50']}  p99 {lag['p99']}  max {lag['max']}"))
    e = r["errors"]
    rows.append(
        (
            "errors",
            f"{e['total']}"
            + (
                " (" + ", ".join(f"{k}: {v}" for k, v in sorted(e["by_kind"].items())) + ")"
                if e["by_kind"]
                else ""
            ),
        )
    )
    if e["attributable_to_conntrack"]:
        rows.append(
            (
                "  from conntrack",
                ", ".join(f"{k}: {v}" for k, v in e["attributable_to_conntrack"].items()),
            )
        )
    c = r["comparison"]
    kinds = ", ".join(f"{k}: {v}" for k, v in sorted(c["by_kind"].items()))
    rows.append(
        (
            "mismatches",
            f"{c['mismatched']} of {c['compared']} compared" + (f" ({kinds})" if kinds else ""),
        )
    )
    ct = r["conntrack"]
    if ct.get("available"):
        rows.append(
            (
                "conntrack",
                f"netns {ct['netns']}: peak {ct['peak_count']}/{ct['max']} "
                f"({100 * ct['peak_fill']:.1f}%), insert_failed +"
                f"{ct['delta']['insert_failed']}, drop +{ct['delta']['drop']}, "
                f"early_drop +{ct['delta']['early_drop']}",
            )
        )
        th = ct.get("throttle", {})
        if th.get("throttled_s"):
            rows.append(
                (
                    "  throttle",
                    f"new connections held back {th['throttled_s']:.1f}s "
                    f"({th['delayed_connections']} delayed, "
                    f"{th['delay_s']:.1f}s total wait"
                    + (
                        f", {th['kept_open_under_pressure']} kept open for reuse"
                        if th.get("kept_open_under_pressure")
                        else ""
                    )
                    + ")",
                )
            )
        else:
            rows.append(("  throttle", "not needed"))
    else:
        rows.append(("conntrack", ct.get("reason", "not available")))
    mk = r.get("mocks")
    if mk:
        rows.append(
            (
                "mocks",
                f"{mk['served']} served, {mk['unmatched']} unmatched, {mk['recorded']} recorded"
                + (f", {mk['unsafe']} refused as unsafe (502)" if mk.get("unsafe") else "")
                + "".join(
                    f"; {d}: {c['served']} served {c['unmatched']} unmatched"
                    for d, c in mk["by_dependency"].items()
                ),
            )
        )
    sut = r.get("sut")
    if sut:
        mem = sut.get("memory_bytes_max")
        rows.append(
            (
                "service cpu/mem",
                f"pid {sut['pid']} cgroup {sut['cgroup'] or '/'}: "
                f"{_fmt(sut.get('cpu_s'))} CPU s ({_fmt(sut.get('cpu_cores_avg'))} cores), "
                + (f"peak {mem / 2**20:.1f} MiB" if mem is not None else "memory -")
                + (f"  ({sut['note']})" if sut.get("note") else ""),
            )
        )
    cpu = r["cpu"]
    rows.append(
        (
            "agent cpu",
            f"cgroup {cpu.get('version') or '-'} quota {cpu.get('quota', '-')}: "
            f"throttled {cpu.get('nr_throttled', 0)} periods, "
            f"{cpu.get('throttled_s', 0):.2f}s",
        )
    )
    rows.append(
        ("peak memory", f"{r['memory']['peak_rss_kb_max'] / 1024:.1f} MiB (largest process)")
    )
    for a in r.get("agents") or []:
        state = a.get("state", "")
        extra = (
            f", did not run {a.get('not_run', 0)} of {a.get('planned', 0)}" if a.get("lost") else ""
        )
        rows.append((f"agent {a['address']}", f"{state}: {a.get('sent', 0)} sent{extra}"))
    width = max(len(k) for k, _ in rows)
    lines = [f"{k.ljust(width)}  {v}" for k, v in rows]
    for s in c["samples"][:5]:
        what = s.get("error") or "; ".join(s.get("diffs", [])[:3])
        lines.append(f"  #{s['index']} {s['method']} {s['target']}: {what}")
    return "\n".join(lines)
