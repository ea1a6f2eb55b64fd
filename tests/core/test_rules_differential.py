"""The edge rules in the Rust core (nodetap_core.Rules) and in Python (agent/rules) make the
same RRPairs byte for byte: generated RRPairs (secrets, JSON bodies with escapes and deep
nesting, Latin-1 and Unicode text, compressed bodies, metadata for every condition) under the
rule sets of tests/rules, the defaults, the example file and a set that uses every feature."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings

from nodetap.v1 import rrpair_pb2 as pb
from tests.core.paths import Conn, conversation, core_path
from tests.core.rules_pairs import rrpairs
from tests.core.rules_sets import ENGINES, RULE_SETS, assert_same
from tests.core.test_differential import CASES


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(rrpairs())
def test_core_and_python_rules_write_the_same_bytes(pair: pb.RRPair) -> None:
    for name in RULE_SETS:
        assert_same(name, pair)


SECRET_BODY = b'{"user": {"password": "hunter2", "ssn": "123-45-6789"}, "n": 4111111111111111}'
SECRETS: list[tuple[str, bytes | int]] = [
    (
        "req",
        b"POST /login?mail=bob@example.org HTTP/1.1\r\nHost: admin.example.com\r\n"
        b"Authorization: Bearer eyJhbGciOiJIUzI1.eyJzdWIiOiIxMjM0.c2lnbmF0dXJl\r\n"
        b"Cookie: sid=abc\r\nX-Api-Key: k-123\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(SECRET_BODY) + SECRET_BODY,
    ),
    (
        "res",
        b"HTTP/1.1 200 OK\r\nSet-Cookie: sid=\xe9t\xe9; HttpOnly\r\nContent-Length: %d\r\n\r\n"
        % len(SECRET_BODY)
        + SECRET_BODY,
    ),
    ("req", b"GET /healthz HTTP/1.1\r\nUser-Agent: kube-probe/1.30\r\n\r\n"),
    ("res", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"),
]


def test_decoded_rrpairs_give_the_same_bytes() -> None:
    """RRPairs the core's decoder made of recorded HTTP/1.x exchanges (the framing cases of
    test_differential and an exchange full of secrets), on every rule set."""
    cases = {**CASES, "secrets": SECRETS}
    batches = [
        b"".join(conversation(Conn(i + 1), pieces)) for i, pieces in enumerate(cases.values())
    ]
    pairs, _, counters = core_path(batches)
    assert counters["panics"] == 0 and len(pairs) > len(cases)
    for data in pairs:
        pair = pb.RRPair.FromString(data)
        for name in RULE_SETS:
            assert_same(name, pair)
    redacted = [ENGINES["example"][1].apply(p) for p in pairs]
    assert any(r is not None and b"hunter2" not in r and b"redacted" in r for r in redacted)


def test_tests_rules_examples_give_the_same_bytes() -> None:
    """The RRPairs of tests/rules/test_rules.py's redaction test, on every rule set."""
    body = json.dumps(
        {
            "user": {"password": "hunter2", "email": "bob@example.org", "ssn": "123-45-6789"},
            "card": {"number": 4111111111111111, "exp": "12/30"},
            "ok": [1, 2, 3],
            "valid16": "1234567812345678",
            "order": "ORD-123456",
        }
    ).encode()
    p = pb.RRPair(id="p-1", l7protocol="http")
    p.server.ip, p.server.port = "10.0.0.1", 8080
    p.http.req.method, p.http.req.url, p.http.req.body = "GET", "/u?mail=bob@example.org", body
    for k, v in [
        ("Authorization", "Basic dXNlcjpwYXNz"),
        ("X-Api-Key", "k-123"),
        ("Referer", "https://x/?t=eyJhbGciOiJIUzI1.eyJzdWIiOiIxMjM0.c2lnbmF0dXJl"),
    ]:
        p.http.req.headers.add(name=k, value=v)
    p.http.res.status_code = 200
    p.http.res.headers.add(name="Set-Cookie", value="sid=abc123; HttpOnly")
    p.http.res.body = body
    for name in RULE_SETS:
        assert_same(name, p)
    _, core = ENGINES["redaction"]
    out = pb.RRPair()
    out.ParseFromString(core.apply(p.SerializeToString()))
    assert b"hunter2" not in out.http.req.body and "redacted" in out.flags


@pytest.mark.parametrize(
    "body",
    [
        b"@" + b"a" * 300_000,
        b"a" * 300_000 + b"@",
        b"4" * 300_000,
        b"4 " * 150_000,
        b"bearer " * 40_000,
        b"eyJ" + b"a" * 300_000,
        b'{"a":' * 100_000,
    ],
    ids=["at-a", "a-at", "digits", "digit-space", "bearer", "jwt", "nested"],
)
def test_adversarial_bodies_are_the_same(body: bytes) -> None:
    """Bodies that took quadratic time before (issue 22): both sides in linear time (the
    harness's timeout is no measure; a quadratic engine would take hours), same bytes."""
    p = pb.RRPair(id="x")
    p.http.req.body = body
    p.http.req.headers.add(name="Content-Type", value="application/json")
    for name in ("empty-file", "redaction"):
        assert_same(name, p)
