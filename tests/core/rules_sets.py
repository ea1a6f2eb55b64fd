"""The rule sets the rules differential tests run both engines on (tests/rules, the defaults,
the example file, a set that uses every feature), their engines (agent/rules and
nodetap_core.Rules), and the check that both make the same RRPair bytes."""

from __future__ import annotations

from typing import Any

import nodetap_core

from agent.rules import RuleEngine, parse
from agent.rules.config import to_json
from agent.rules.engine import default_ruleset
from agent.rules.example import EXAMPLE
from nodetap.v1 import rrpair_pb2 as pb

KEY = b"k" * 32

RULE_SETS: dict[str, str | None] = {
    "defaults": None,  # no rules file: credential headers only
    "empty-file": "{}",  # builtins, every pattern, default headers
    "filters": """
drop:
  - {name: admin-host, host: "admin.*"}
  - {name: port-9090, port: [9090]}
  - {name: deletes, method: [delete]}
  - {name: kube-system, namespace: "kube-*"}
  - {name: canary, labels: {track: "canary*"}}
""",
    "sampling": """
sample:
  - {name: web, workload: "Deployment/web", rate: 0.25}
  - {name: none-of-batch, workload: "Job/*", rate: 0}
""",
    "redaction": """
redact:
  headers: [X-Api-Key]
  json_fields: [password, card.number, "*.ssn"]
  custom: [{name: order-id, regex: "ORD-[0-9]{6}"}]
  hash_key: test-key
""",
    "example": EXAMPLE,
    "ssn": "redact:\n  custom: [{name: ssn, regex: '[0-9]{3}-[0-9]{2}-[0-9]{4}'}]\n",
    "everything": r"""
builtin: [metrics-scrapes]
drop:
  - {name: brackets, host: "[a-c]dmin.*", path: '^/internal/\d+\b'}
  - {name: internal, path: '^/INTERNAL/\d|^/internal/\d+\b'}
  - {name: meta, pod: "batch-?", workload: "Job/[!y]*", labels: {app: "debug-*"}}
  - {name: ports-and-methods, port: [80], method: [GET, ß]}
sample:
  - {name: half, namespace: ["default", "kube-*"], rate: 0.5}
  - {name: most, rate: 0.9}
redact:
  headers: [X-Api-Key, x-other]
  default_headers: false
  json_fields: ["p?ssword", "a.*.b", "[!x]", "pässword", "user.*"]
  patterns: [jwt, credit-card, bearer, email]
  custom:
    - {name: words, regex: '(?i)\bsecret\s\w+'}
    - {name: digits, regex: '\d{3,}|[[:alpha:]]{9,}'}
    - {name: quoted, regex: '\Q.*\E|[\d&&]'}
    - {name: caps, regex: '(?i)k+'}
    - {name: braces, regex: 'x{,3}|\b{start}|[[:^alpha:][:digit:]]{2}'}
    - {name: negated, regex: 'q[^a]\PL\D.|q\p{^Greek}[^\D]'}
""",
}


def engines(name: str) -> tuple[RuleEngine, Any]:
    text = RULE_SETS[name]
    rs = default_ruleset() if text is None else parse(text, name)
    return RuleEngine(rs, announce=False, key=KEY), nodetap_core.Rules(to_json(rs), KEY)


ENGINES = {name: engines(name) for name in RULE_SETS}


def assert_same(name: str, pair: pb.RRPair) -> None:
    engine, core = ENGINES[name]
    data = pair.SerializeToString(deterministic=True)
    d = engine.evaluate(pair)
    assert core.evaluate(data) == (d.action, d.rule, d.redactions), name
    copy = pb.RRPair()
    copy.ParseFromString(data)
    py = engine.apply(copy)
    want = None if py is None else py.SerializeToString(deterministic=True)
    assert core.apply(data) == want, name
