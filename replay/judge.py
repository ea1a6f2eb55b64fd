"""A report that judges: `--fail-on errors,mismatches,unmatched-mocks,p99>MS,rate<RATIO`.

Each condition is checked against the finished report; the verdict names every condition that
held. `errors` and `mismatches` (and `unmatched-mocks`) fail on any; `errors>N` and
`mismatches>N` allow N. Pure functions.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from nodetap.errors import ConfigError

EXIT_FAILED = 3  # the replay ran, and a --fail-on condition held
NAMES = ("errors", "mismatches", "unmatched-mocks", "p99", "rate")
_COND = re.compile(r"^(errors|mismatches|unmatched-mocks|p99|rate)\s*(?:([<>])\s*([0-9.]+))?$")


@dataclass(frozen=True)
class Condition:
    name: str
    op: str  # ">" or "<"
    limit: float

    def __str__(self) -> str:
        return f"{self.name}{self.op}{self.limit:g}"


def parse_fail_on(text: str) -> list[Condition]:
    """'errors,mismatches,p99>250,rate<0.95' -> conditions; ConfigError with the syntax."""
    out: list[Condition] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        m = _COND.match(part)
        wanted = {"p99": ">", "rate": "<"}
        bad = m is None
        if m is not None:
            name, op, num = m.group(1), m.group(2), m.group(3)
            bad = op != wanted[name] if name in wanted else op == "<"
        if bad or m is None:
            raise ConfigError(
                f"--fail-on {part!r}: give a comma list of errors, mismatches, unmatched-mocks "
                "(each optionally >N), p99>MS, rate<RATIO; for example "
                "--fail-on errors,mismatches,p99>250,rate<0.95"
            )
        try:
            limit = float(num) if num else 0.0
        except ValueError:
            raise ConfigError(f"--fail-on {part!r}: {num!r} is not a number") from None
        out.append(Condition(name, op or ">", limit))
    if not out:
        raise ConfigError("--fail-on is empty; for example --fail-on errors,mismatches")
    return out


def _value(name: str, report: dict[str, Any]) -> float | None:
    if name == "errors":
        unsafe = sum((report.get("requests", {}).get("not_sent_unsafe") or {}).values())
        return float(report["errors"]["total"] + len(report.get("failures") or ()) + unsafe)
    if name == "mismatches":
        return float(report["comparison"]["mismatched"])
    if name == "unmatched-mocks":
        return float((report.get("mocks") or {}).get("unmatched", 0))
    if name == "p99":
        lat = report["latency_ms"]
        return float(lat["p99"]) if lat.get("count") else None
    ratio = report["rate"].get("ratio")
    return float(ratio) if ratio is not None else None


def judge(conditions: list[Condition], report: dict[str, Any]) -> dict[str, Any]:
    """The verdict: {"passed": bool, "failed": [...], "checked": [...], "not_applicable": [...]}."""
    failed, checked, na = [], [], []
    for c in conditions:
        v = _value(c.name, report)
        if v is None:
            why = (
                "no latency measured (no response)"
                if c.name == "p99"
                else "no planned rate (give --rate or --timing original)"
            )
            na.append(f"{c}: {why}")
            if c.name == "p99":  # no response at all is a failure of a latency objective
                failed.append(f"{c}: {why}")
            continue
        hit = v > c.limit if c.op == ">" else v < c.limit
        line = f"{c}: {v:g}"
        checked.append(line)
        if hit:
            failed.append(line)
    return {"passed": not failed, "failed": failed, "checked": checked, "not_applicable": na}


def verdict_line(v: dict[str, Any]) -> str:
    if v["passed"]:
        return "verdict: PASSED (" + ", ".join(v["checked"] + v["not_applicable"]) + ")"
    return "verdict: FAILED (" + "; ".join(v["failed"]) + ")"
