"""The replay report as one self-contained HTML file (plotly, its JavaScript inlined): latency
and requests over time, status codes, mismatches with their diffs, mocks served and missed per
dependency, conntrack fill, CPU throttling, and the service's CPU and memory.

    html = render(report, result)   # result: the merged raw result (report["result"])
"""

from __future__ import annotations

import html
from typing import Any

import plotly.graph_objects as go

from replay.stats import Histogram

LAYOUT = {"height": 320, "margin": {"l": 60, "r": 20, "t": 40, "b": 40}}


def _latency(result: dict[str, Any]) -> go.Figure:
    secs = sorted(int(s) for s in (result.get("latency_secs") or {}))
    p50, p99 = [], []
    for s in secs:
        h = Histogram.from_wire(result["latency_secs"][str(s)])
        p50.append(h.quantile(0.5) * 1000)
        p99.append(h.quantile(0.99) * 1000)
    sent = result.get("secs") or {}
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=secs, y=p50, name="p50 ms", mode="lines+markers"))
    fig.add_trace(go.Scatter(x=secs, y=p99, name="p99 ms", mode="lines+markers"))
    fig.add_trace(
        go.Bar(
            x=[int(s) for s in sent],
            y=list(sent.values()),
            name="requests sent",
            yaxis="y2",
            opacity=0.3,
        )
    )
    fig.update_layout(
        title="Latency and requests per second",
        xaxis_title="second of the run",
        yaxis_title="ms",
        yaxis2={"overlaying": "y", "side": "right", "title": "requests"},
        **LAYOUT,
    )
    return fig


def _statuses(report: dict[str, Any]) -> go.Figure:
    st = report["requests"]["statuses"]
    errors = report["errors"]["by_kind"]
    fig = go.Figure(
        go.Bar(
            x=[*sorted(st), *(f"error: {k}" for k in sorted(errors))],
            y=[*(st[k] for k in sorted(st)), *(errors[k] for k in sorted(errors))],
        )
    )
    fig.update_layout(title="Status codes and errors", **LAYOUT)
    return fig


def _mocks(report: dict[str, Any]) -> go.Figure | None:
    m = report.get("mocks")
    if not m:
        return None
    deps = list(m["by_dependency"])
    fig = go.Figure()
    for key in ("served", "unmatched", "recorded"):
        fig.add_trace(go.Bar(x=deps, y=[m["by_dependency"][d][key] for d in deps], name=key))
    fig.update_layout(title="Mocks per dependency", barmode="group", **LAYOUT)
    return fig


def _timelines(report: dict[str, Any]) -> go.Figure | None:
    ct = (report.get("conntrack") or {}).get("timeline") or []
    cpu = (report.get("cpu") or {}).get("timeline") or []
    sut = (report.get("sut") or {}).get("timeline") or []
    if not (ct or cpu or sut):
        return None
    fig = go.Figure()
    if ct:
        fig.add_trace(
            go.Scatter(x=[p["t"] for p in ct], y=[p.get("count") for p in ct], name="conntrack")
        )
    if cpu:
        fig.add_trace(
            go.Scatter(
                x=[p["t"] for p in cpu],
                y=[p["nr_throttled"] for p in cpu],
                name="replay CPU-throttled periods",
                yaxis="y2",
            )
        )
    if sut:
        fig.add_trace(
            go.Scatter(
                x=[p["t"] for p in sut],
                y=[p["cpu_s"] for p in sut],
                name="service CPU s",
                yaxis="y2",
            )
        )
        mem = [(p["t"], p["mem"] / 2**20) for p in sut if p.get("mem") is not None]
        if mem:
            fig.add_trace(
                go.Scatter(x=[t for t, _ in mem], y=[m for _, m in mem], name="service MiB")
            )
    fig.update_layout(
        title="Conntrack entries, CPU throttling, the service's CPU and memory",
        xaxis_title="second of the run",
        yaxis2={"overlaying": "y", "side": "right"},
        **LAYOUT,
    )
    return fig


def _mismatch_table(report: dict[str, Any]) -> str:
    rows = []
    for s in report["comparison"]["samples"]:
        what = s.get("error") or "\n".join(s.get("diffs", []))
        rows.append(
            f"<tr><td>{s['index']}</td><td>{html.escape(s['method'])}</td>"
            f"<td>{html.escape(s['target'])}</td><td><pre>{html.escape(what)}</pre></td></tr>"
        )
    if not rows:
        return "<p>No mismatches.</p>"
    return (
        '<table id="mismatches"><tr><th>#</th><th>method</th><th>target</th><th>diff</th></tr>'
        + "".join(rows)
        + "</table>"
    )


def render(report: dict[str, Any], result: dict[str, Any]) -> str:
    figs = [
        f
        for f in (_latency(result), _statuses(report), _mocks(report), _timelines(report))
        if f is not None
    ]
    parts = [
        fig.to_html(full_html=False, include_plotlyjs=(i == 0), div_id=f"chart{i}")
        for i, fig in enumerate(figs)
    ]
    from replay.report import table

    summary = html.escape(table(report))
    verdict = report.get("verdict")
    v = ""
    if verdict:
        v = f"<h2>Verdict: {'PASSED' if verdict['passed'] else 'FAILED'}</h2>"
        v += "<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in verdict["failed"]) + "</ul>"
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>nodetap replay report</title>"
        "<style>body{font-family:sans-serif;margin:1em 2em}pre{margin:0}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;"
        "vertical-align:top}</style></head><body>"
        f"<h1>nodetap replay: {html.escape(str(report['plan'].get('target', '')))}</h1>{v}"
        f"<pre id='summary'>{summary}</pre>"
        + "".join(parts)
        + f"<h2>Mismatches</h2>{_mismatch_table(report)}</body></html>"
    )
