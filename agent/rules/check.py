"""What a rule set would do to a capture: per rule and per RRPair (for `nodetap rules check`).

Uses RuleEngine.evaluate, the very code the agent's apply() runs, so the report matches what
the agent then does (sampling is deterministic per RRPair id)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from agent.rules import linear
from agent.rules.engine import RuleEngine
from agent.rules.redact import MAX_MATCHES
from nodetap.v1 import rrpair_pb2 as pb


@dataclass(slots=True)
class RuleStats:
    matched: int = 0
    dropped: int = 0
    sampled_out: int = 0
    redacted: int = 0
    examples: list[str] = field(default_factory=list)  # a few RRPair ids


@dataclass(slots=True)
class Report:
    pairs: int = 0
    kept: int = 0
    dropped: int = 0
    sampled_out: int = 0
    redacted: int = 0
    rules: dict[str, RuleStats] = field(default_factory=dict)
    decisions: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "pairs": self.pairs,
            "kept": self.kept,
            "dropped": self.dropped,
            "sampled_out": self.sampled_out,
            "redacted": self.redacted,
            "rules": {
                name: {
                    "matched": s.matched,
                    "dropped": s.dropped,
                    "sampled_out": s.sampled_out,
                    "redacted": s.redacted,
                    "examples": s.examples,
                }
                for name, s in self.rules.items()
            },
            "decisions": self.decisions,
        }


def rule_names(engine: RuleEngine) -> list[str]:
    rs = engine.ruleset
    names = [f"builtin:{b}" for b in rs.builtin] + [r.name for r in rs.drop]
    names += [r.name for r in rs.sample]
    if rs.redact.headers:
        names.append("redact:headers")
    if rs.redact.json_fields:
        names.append("redact:json-fields")
    names += [f"redact:{p}" for p in rs.redact.patterns]
    names += [f"redact:{c.name}" for c in rs.redact.custom]
    names.append("redact:encoded-body")
    return names


def check(engine: RuleEngine, pairs: Iterable[pb.RRPair], examples: int = 3) -> Report:
    rep = Report(rules={n: RuleStats() for n in rule_names(engine)})
    for pair in pairs:
        d = engine.evaluate(pair)
        rep.pairs += 1
        for name in d.matched:
            st = rep.rules.setdefault(name, RuleStats())
            st.matched += 1
            if len(st.examples) < examples:
                st.examples.append(pair.id)
        if d.action == "drop" and d.rule:
            rep.dropped += 1
            rep.rules[d.rule].dropped += 1
        elif d.action == "sample_out" and d.rule:
            rep.sampled_out += 1
            rep.rules[d.rule].sampled_out += 1
        else:
            rep.kept += 1
            if d.redactions:
                rep.redacted += 1
            for name in d.redactions:
                rep.rules[name].redacted += 1
        rep.decisions.append(
            {"id": pair.id, "action": d.action, "rule": d.rule, "redactions": d.redactions}
        )
    return rep


def cost_warnings(engine: RuleEngine) -> list[str]:
    """One line per user pattern whose matches have no length bound: a search for the next
    match can run to the end of the field (`a+b|a` over "aaa..." does, for every match), so
    its cost is up to matches x length. The agent stops at MAX_MATCHES matches per field."""
    out = []
    for c in engine.ruleset.redact.custom:
        if linear.match_lengths(c.regex)[1] is None:
            out.append(
                f"redact.custom {c.name}: {c.regex!r} has no upper bound on a match's length, "
                "so on a long field each match can cost a pass over the rest of it (matches x "
                f"length); after {MAX_MATCHES} matches in one field the rest is hashed whole and "
                "the RRPair flagged redact-capped. Bound it, e.g. [0-9]{1,64} instead of [0-9]+"
            )
    return out
