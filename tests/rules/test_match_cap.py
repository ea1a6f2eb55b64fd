"""User patterns whose cost is matches x length (issue 22): `a+b|a` over a 1 MiB body rescans
the rest of the body for every one of its million matches. Both rule engines (agent/rules and
the core's) stop at MAX_MATCHES matches per field, hash the rest whole (length kept) and flag
the RRPair, byte for byte alike; patterns that can match the empty string are refused, and
`rules check` warns on patterns without a bound on a match's length."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nodetap_core
import pytest

from agent.rules.config import RuleError, parse, to_json
from agent.rules.engine import RuleEngine
from agent.rules.redact import MAX_MATCHES
from nodetap.v1 import rrpair_pb2 as pb

REPO = Path(__file__).resolve().parents[2]
KEY = b"k" * 32
RULES = "redact:\n  custom: [{name: ab, regex: 'a+b|a'}]\n"


def _pair(body: bytes, url: str = "/") -> pb.RRPair:
    p = pb.RRPair(id="cap-1", l7protocol="http")
    p.http.req.method, p.http.req.url = "POST", url
    p.http.req.body = body
    p.http.res.status_code = 200
    p.http.res.body = b"ok"
    return p


def test_one_mib_body_is_capped_alike_on_both_sides() -> None:
    body = b"a" * (1 << 20)
    rs = parse(RULES, "cap")
    engine = RuleEngine(rs, announce=False, key=KEY)
    core = nodetap_core.Rules(to_json(rs), KEY)
    pair = _pair(body, "/q?" + "a" * 4000)
    data = pair.SerializeToString(deterministic=True)
    out = engine.apply(pair)
    assert out is not None
    assert core.apply(data) == out.SerializeToString(deterministic=True)
    got = out.http.req.body
    assert len(got) == len(body)
    # the first MAX_MATCHES matches are tokens of "a" each, the rest one token
    one = engine._compiled.redactor.token(b"a", 1).encode()
    assert got[:MAX_MATCHES] == one * MAX_MATCHES
    rest = body[MAX_MATCHES:]
    assert got[MAX_MATCHES:] == engine._compiled.redactor.token(rest, len(rest)).encode()
    assert len(out.http.req.url) == 4003 and "redact-capped" in out.flags
    assert "redacted" in out.flags
    d = engine.evaluate(_pair(body))
    assert "redact:capped" in d.redactions and "redact:ab" in d.redactions


def test_below_the_cap_every_match_is_its_own_token() -> None:
    rs = parse(RULES, "cap")
    engine = RuleEngine(rs, announce=False, key=KEY)
    core = nodetap_core.Rules(to_json(rs), KEY)
    body = b"xab" * (MAX_MATCHES - 1) + b"x"
    pair = _pair(body)
    data = pair.SerializeToString(deterministic=True)
    out = engine.apply(pair)
    assert out is not None and "redact-capped" not in out.flags
    assert core.apply(data) == out.SerializeToString(deterministic=True)
    tok = engine._compiled.redactor.token(b"ab", 2).encode()
    assert out.http.req.body == (b"x" + tok) * (MAX_MATCHES - 1) + b"x"


@pytest.mark.parametrize("rx", ["a*", "(a+b)?", r"\b", "x?|y"])
def test_patterns_that_can_match_empty_are_refused(rx: str) -> None:
    text = f"redact:\n  custom: [{{name: e, regex: '{rx}'}}]\n"
    with pytest.raises(RuleError, match="can match the empty string"):
        parse(text, "empty")
    with pytest.raises(ValueError, match="empty string"):
        nodetap_core.Rules(json.dumps({"redact": {"custom": [{"name": "e", "regex": rx}]}}), KEY)


def test_rules_check_warns_on_unbounded_patterns(tmp_path: Path) -> None:
    f = tmp_path / "r.yaml"
    f.write_text(
        "redact:\n  custom:\n    - {name: ab, regex: 'a+b|a'}\n"
        "    - {name: pin, regex: '[0-9]{4,6}'}\n"
    )
    r = subprocess.run(
        [sys.executable, "-m", "cli", "rules", "check", str(f), "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    warned = [line for line in r.stderr.splitlines() if "warning:" in line]
    assert len(warned) == 1 and "ab" in warned[0] and "matches x length" in warned[0]
    assert len(json.loads(r.stdout)["warnings"]) == 1
