"""The core's rules (nodetap_core.Rules) beyond the bytes it writes: its counters and rule
matches, the patterns the rules check refuses because the core cannot run them, and bad
input refused in one line (the RRPair comparisons: test_rules_differential.py)."""

from __future__ import annotations

import json

import nodetap_core
import pytest

from agent.rules import RuleError, parse
from agent.rules.config import to_json
from nodetap.v1 import rrpair_pb2 as pb
from tests.core.rules_sets import ENGINES, KEY


def test_counters_and_matches() -> None:
    rs = parse("drop:\n  - {name: gone, path: ^/gone}\n")
    core = nodetap_core.Rules(to_json(rs), KEY)
    p = pb.RRPair(id="x")
    p.http.req.url = "/gone/1"
    assert core.apply(p.SerializeToString()) is None
    p.http.req.url = "/kept"
    p.http.req.headers.add(name="Cookie", value="a=b")
    assert core.apply(p.SerializeToString()) is not None
    assert core.counters() == {
        "rules_kept": 1,
        "rules_dropped": 1,
        "rules_sampled_out": 0,
        "rules_redacted": 1,
    }
    assert core.rule_matches() == {"gone": 1, "redact:headers": 1}


def test_patterns_the_core_cannot_run_are_refused_by_the_rules_check() -> None:
    with pytest.raises(RuleError, match=r"r.yaml:4: redact.custom\[0\]: .*core cannot run it"):
        parse("redact:\n  custom:\n    - name: c\n      regex: '\\C'\n", "r.yaml")
    with pytest.raises(RuleError, match="core cannot run it"):
        parse("drop:\n  - {name: d, path: '\\x{D800}'}\n", "r.yaml")


def test_bad_input_is_one_line() -> None:
    with pytest.raises(ValueError, match=r"rules refused by the core: .*not valid JSON"):
        nodetap_core.Rules("{", KEY)
    with pytest.raises(ValueError, match=r"redact.custom c: .*\\C"):
        nodetap_core.Rules(json.dumps({"redact": {"custom": [{"name": "c", "regex": r"\C"}]}}), KEY)
    with pytest.raises(ValueError, match="not an encoded RRPair"):
        ENGINES["defaults"][1].apply(b"\xff\xff")
