"""The exit summary of `nodetap capture`: what happened to every RRPair, and every loss.

Lines on stderr:

    nodetap: 40 RRPairs from 12 connections; 510 events, 123456 bytes
    nodetap: flagged RRPairs: 2 truncated
    nodetap: RRPairs: 40 written to web.jsonl, 0 dropped by edge rules
    nodetap: forwarder 127.0.0.1:7070: 40 sent, 0 acknowledged, 40 spooled to DIR (resent by
             the next run), 0 dropped
    nodetap: dropped: 3976 bytes (truncated=3976); 0 records, 0 calls, ...

Losses are grouped by the unit they count (agent/metrics.py: drops_by_unit), as
Prometheus has them: adding bytes to records means nothing.
"""

from __future__ import annotations

from agent.metrics import DROP_UNITS, drops_by_unit

_SINK_DROPS = ("dropped_spool_full", "dropped_queue_full", "dropped_too_large", "dropped_at_close")


def format_summary(
    summary: dict[str, int],
    *,
    output: str = "-",
    forwarder: str | None = None,
    spool_dir: str | None = None,
) -> str:
    if "packets" in summary:  # packet mode
        return _packet(summary)
    s = summary
    lines = [
        f"nodetap: {s.get('rrpairs', 0)} RRPairs from {s.get('conns_tracked', 0)} "
        f"connections; {s.get('records', 0)} events, {s.get('data_bytes', 0)} bytes",
    ]
    flagged = ", ".join(
        f"{s[k]} {k[8:]}"
        for k in ("rrpairs_incomplete", "rrpairs_gap", "rrpairs_truncated", "rrpairs_noaddr")
        if s.get(k)
    )
    if flagged:
        lines.append(f"nodetap: flagged RRPairs: {flagged}")
    if "written" in s:
        where = "stdout" if output == "-" else output
        lines.append(
            f"nodetap: RRPairs: {s['written']} written to {where}, "
            f"{s.get('rules_dropped', 0)} dropped by edge rules"
            + (
                f", {s['not_selected']} of pods not selected by -n/-l"
                if "not_selected" in s
                else ""
            )
        )
    if forwarder:
        lines.append(_forwarder(s, forwarder, spool_dir))
    lines.append("nodetap: dropped: " + _drops(s))
    return "\n".join(lines)


def _forwarder(s: dict[str, int], addr: str, spool_dir: str | None) -> str:
    put, acked, spooled = s.get("sink_put", 0), s.get("sink_acked", 0), s.get("sink_spooled", 0)
    dropped = {k[8:]: s.get(f"sink_{k}", 0) for k in _SINK_DROPS}
    text = f"nodetap: forwarder {addr}: {put} sent, {acked} acknowledged"
    if spooled or spool_dir:
        text += f", {spooled} spooled"
        if spool_dir:
            text += f" to {spool_dir} (resent by the next run)"
    total = sum(dropped.values())
    text += f", {total} dropped"
    if total:
        text += " (" + ", ".join(f"{k}={v}" for k, v in dropped.items() if v) + ")"
    return text


def _drops(s: dict[str, int]) -> str:
    by_unit = drops_by_unit(s)
    if not any(v for causes in by_unit.values() for v in causes.values()):
        return "nothing"
    parts = []
    for unit in DROP_UNITS:
        causes = {k: v for k, v in sorted(by_unit[unit].items()) if v}
        if causes:
            detail = ", ".join(f"{k}={v}" for k, v in causes.items())
            parts.append(f"{sum(causes.values())} {unit} ({detail})")
        else:
            parts.append(f"0 {unit}")
    return "; ".join(parts)


def _packet(s: dict[str, int]) -> str:
    return (
        f"nodetap: {s.get('rrpairs', 0)} RRPairs from {s.get('flows', 0)} flows; "
        f"{s.get('packets', 0)} packets, {s.get('malformed', 0)} malformed\n"
        f"nodetap: gaps: {s.get('gaps', 0)} ({s.get('gap_bytes', 0)} bytes); "
        f"kernel drops: {s.get('kernel_drops', 0)} of {s.get('kernel_packets', 0)} packets"
    )
