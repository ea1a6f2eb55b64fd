"""The edge rules in the Rust core (nodetap_core.Rules) and in Python (agent/rules) make the
same RRPairs byte for byte: generated RRPairs (secrets, JSON bodies with escapes and deep
nesting, Latin-1 and Unicode text, compressed bodies, metadata for every condition) under the
rule sets of tests/rules, the defaults, the example file and a set that uses every feature."""

from __future__ import annotations

import json
from typing import Any

import nodetap_core
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.rules import RuleEngine, RuleError, parse
from agent.rules.config import to_json
from agent.rules.engine import default_ruleset
from agent.rules.example import EXAMPLE
from nodetap.v1 import rrpair_pb2 as pb
from tests.core.paths import Conn, conversation, core_path
from tests.core.test_differential import CASES

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

# -- RRPairs ----------------------------------------------------------------------------------
PIECES = [
    "bob@example.org",
    "a.b%40c.io",
    "4111 1111 1111 1111",
    "4111-1111-1111-1111",
    "4111111111111111",
    "1234567812345678",
    "5500 0000 0000 0004 1",
    "Bearer abc.DEF-_~+/==",
    "bearer\tx",
    "BEARER\x0by",
    "eyJhbGciOiJIUzI1.eyJzdWIiOiIxMjM0.c2lnbmF0dXJl",
    "ORD-123456",
    "123-45-6789",
    "secret stuff",
    "SECRET\u00a0x",
    "/healthz",
    "/metrics",
    "/internal/42",
    "é",
    "€",
    "\u017f",
    "\u212a",
    "\x0b",
    "٣٣٣",
    " ",
    "-",
    "@",
    "%40",
    ".",
    "?",
    "eyJ",
    "abcdefghij",
    ".*",
    "&",
    "x{,3}",
    "a{start}",
]
TEXT = st.lists(
    st.one_of(st.sampled_from(PIECES), st.text(max_size=6), st.from_regex(r"[0-9 -]{0,24}")),
    max_size=6,
).map("".join)
LATIN1 = TEXT.map(lambda s: s.encode("latin-1", "replace").decode("latin-1"))

KEYS = ["password", "card", "number", "ssn", "user", "a", "b", "x", "pässword", "", 'p"w', "\ud83d"]
JSON_DOC = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.sampled_from(KEYS), kids, max_size=3)
    ),
    max_leaves=10,
)


@st.composite
def json_body(draw: st.DrawFn) -> bytes:
    doc = draw(JSON_DOC)
    text = json.dumps(
        doc,
        ensure_ascii=draw(st.booleans()),
        indent=draw(st.sampled_from([None, 1])),
        separators=draw(st.sampled_from([None, (",", ":")])),
    )
    raw = text.encode("utf-8", "surrogatepass")
    cut = draw(st.sampled_from(["whole", "whole", "whole", "cut", "junk", "space"]))
    if cut == "cut" and raw:
        raw = raw[: draw(st.integers(0, len(raw)))]
    elif cut == "junk":
        raw += draw(st.sampled_from([b"x", b" ", b"\x0b", b"}"]))
    elif cut == "space":
        raw = draw(st.sampled_from([b" ", b"\n\t", b"\x0b"])) + raw
    return raw


BODY = st.one_of(
    st.just(b""),
    json_body(),
    TEXT.map(lambda s: s.encode("utf-8")),
    LATIN1.map(lambda s: s.encode("latin-1")),
    st.binary(max_size=40),
    # surrogates' 3-byte forms (RE2 matches them with negated classes), invalid UTF-8
    st.lists(
        st.sampled_from([b"q", b"\xed\xa0\xbd", b"a", b"1", b"\xff", b"\xc3\xa9", b"\xed\x9f\xbf"]),
        max_size=8,
    ).map(b"".join),
    st.integers(250, 300).map(lambda n: b"[" * n + b"1" + b"]" * n),
    st.integers(250, 300).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
)

HEADER_VALUES = {
    "Host": st.sampled_from(
        ["admin.example.com:8080", "ADMIN.x", "bdmin.y", "[::1]:80", "a:b:c", ""]
    ),
    "User-Agent": st.sampled_from(["kube-probe/1.30", "Prometheus/2.5", "curl/8", ""]),
    "Content-Type": st.sampled_from(["application/json", "text/plain", "APPLICATION/JSON; x", ""]),
    "Content-Encoding": st.sampled_from(["gzip", "identity", " Identity ", "", "\x1c", "br"]),
}
NAMES = list(HEADER_VALUES) + [
    "Authorization",
    "authorization",
    "Cookie",
    "Set-Cookie",
    "Proxy-Authorization",
    "X-Api-Key",
    "X-Other",
    "Referer",
    "X-\u212aey",
]


@st.composite
def headers(draw: st.DrawFn) -> list[tuple[str, str]]:
    out = []
    for name in draw(st.lists(st.sampled_from(NAMES), max_size=5)):
        value = HEADER_VALUES.get(name, LATIN1 if draw(st.booleans()) else TEXT)
        out.append((name, draw(value)))
    return out


URL = st.one_of(
    TEXT.map(lambda s: "/" + s),
    st.tuples(TEXT, TEXT).map(lambda t: f"http://h{t[0]}/{t[1]}?q={t[0]}"),
    st.sampled_from(["/healthz", "/READYZ/", "/metrics", "/internal/12 x", "/a?x=/metrics", ""]),
)


@st.composite
def rrpairs(draw: st.DrawFn) -> pb.RRPair:
    p = pb.RRPair(id=draw(st.text(max_size=12)), l7protocol="http")
    if draw(st.booleans()):
        p.server.ip = draw(st.sampled_from(["10.0.0.1", "Admin.local", ""]))
        p.server.port = draw(st.sampled_from([80, 8080, 9090]))
    p.meta.namespace = draw(st.sampled_from(["kube-system", "default", "kube-public", ""]))
    p.meta.pod = draw(st.sampled_from(["batch-1", "batch-12", "web-0", ""]))
    p.meta.workload = draw(st.sampled_from(["Deployment/web", "Job/x", "Job/y", "Deployment/api"]))
    for k, v in draw(
        st.dictionaries(
            st.sampled_from(["track", "app"]),
            st.sampled_from(["canary-1", "stable", "debug-x"]),
            max_size=2,
        )
    ).items():
        p.meta.labels[k] = v
    p.flags.extend(draw(st.lists(st.sampled_from(["redacted", "gap"]), max_size=1)))
    shape = draw(st.sampled_from(["both", "both", "both", "req", "res", "none"]))
    if shape == "none":
        return p
    if shape in ("both", "req"):
        r = p.http.req
        r.method = draw(st.sampled_from(["GET", "delete", "DELETE", "POST", "ß", "ss"]))
        r.url = draw(URL)
        for k, v in draw(headers()):
            r.headers.add(name=k, value=v)
        for k, v in draw(headers()):
            r.trailers.add(name=k, value=v)
        r.body = draw(BODY)
        r.body_size = len(r.body)
    if shape in ("both", "res"):
        s = p.http.res
        s.status_code = 200
        for k, v in draw(headers()):
            s.headers.add(name=k, value=v)
        s.body = draw(BODY)
        s.body_size = len(s.body)
    return p


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


def fuzz_seeds() -> list[bytes]:
    """Seeds of the core's `rules` fuzz target (tests/core/fuzz_seeds.py writes them): URL,
    header value, request body and content type separated by 0xfd (core/src/rules/fuzz.rs)."""
    bodies = [
        json.dumps({"user": {"password": "hunter2", "ssn": "123-45-6789"}, "a": {"q": {"b": 1}}}),
        json.dumps([{"pässword": -12.5e3, "x": ["4111 1111 1111 1111"]}], ensure_ascii=False),
        '{"\\ud83d\\ude00": "\\u00e9", "p\\"w": "eyJhbGciOiJIUzI1.eyJzdWIiOiIxMjM0.sig"}',
        "[" * 300 + "]" * 300,
    ]
    out = []
    for i, body in enumerate(bodies):
        piece = PIECES[(i * 7) % len(PIECES) :][:4]
        out.append(
            b"\xfd".join(
                [
                    ("/u?mail=" + "".join(piece)).encode(),
                    ("Bearer abc " + piece[0]).encode(),
                    body.encode("utf-8", "surrogatepass"),
                    b"application/json" if i % 2 else b"text/plain",
                ]
            )
        )
    return out
