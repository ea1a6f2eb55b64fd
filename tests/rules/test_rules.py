"""Edge rules: validation with line numbers, filters, sampling, redaction, hot reload,
metrics, and the `nodetap rules check` command."""

from __future__ import annotations

import gzip
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from agent.rules import RuleEngine, RuleError, parse
from nodetap import jsonl
from nodetap.errors import NodetapError
from nodetap.v1 import rrpair_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]


def pair(
    url: str = "/x",
    method: str = "GET",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
    res_headers: list[tuple[str, str]] | None = None,
    res_body: bytes = b"",
    pid: str = "p-1",
    **meta: str,
) -> pb.RRPair:
    p = pb.RRPair(id=pid, l7protocol="http")
    p.server.ip, p.server.port = "10.0.0.1", 8080
    p.http.req.method, p.http.req.url, p.http.req.body = method, url, body
    p.http.req.body_size = len(body)
    for k, v in headers or []:
        p.http.req.headers.add(name=k, value=v)
    p.http.res.status_code = 200
    p.http.res.body, p.http.res.body_size = res_body, len(res_body)
    for k, v in res_headers or []:
        p.http.res.headers.add(name=k, value=v)
    for k, v in meta.items():
        setattr(p.meta, k, v)
    return p


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ("drop:\n  - name: a\n    hots: x\n", 3, "unknown key 'hots'"),
        ("drop:\n  - path: /x\n", 2, "needs a name"),
        ("drop:\n  - name: a\n    path: '(['\n", 3, "bad regular expression"),
        ("sample:\n  - name: s\n    rate: 1.5\n", 3, "between 0 and 1"),
        ("drop:\n  - name: a\n    port: 99999\n", 3, "port number"),
        ("drop:\n  - name: a\n    path: /a\n  - name: a\n    path: /b\n", 4, "already used"),
        ("redact:\n  patterns: [credit-card, ssn]\n", 2, "unknown pattern 'ssn'"),
        ("drop: [\n", 2, "not valid YAML"),
        ("drop:\n  - name: everything\n", 2, "would drop everything"),
        ("builtin: [health]\n", 1, "unknown rule set 'health'"),
    ],
)
def test_bad_rules_name_the_line_and_reason(text: str, line: int, reason: str) -> None:
    with pytest.raises(RuleError) as err:
        parse(text, "r.yaml")
    assert str(err.value).startswith(f"r.yaml:{line}: ")
    assert reason in str(err.value)


def test_bad_file_refused_by_cli_and_engine(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("drop:\n  - name: x\n    methd: GET\n")
    r = subprocess.run(
        [sys.executable, "-m", "cli", "rules", "check", str(bad)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert f"{bad}:3: drop[0]: unknown key 'methd'" in r.stderr
    assert "Traceback" not in r.stderr
    with pytest.raises(NodetapError):
        RuleEngine.from_file(str(bad))


def test_filters_and_builtins() -> None:
    eng = RuleEngine(
        parse("""
drop:
  - {name: admin-host, host: "admin.*"}
  - {name: port-9090, port: [9090]}
  - {name: deletes, method: [delete]}
  - {name: kube-system, namespace: "kube-*"}
  - {name: canary, labels: {track: "canary*"}}
""")
    )
    assert eng.apply(pair(headers=[("Host", "admin.example.com:8080")])) is None
    assert eng.apply(pair(headers=[("Host", "www.example.com")])) is not None
    p = pair()
    p.server.port = 9090
    assert eng.evaluate(p).rule == "port-9090"
    assert eng.evaluate(pair(method="DELETE")).rule == "deletes"
    assert eng.evaluate(pair(namespace="kube-system")).rule == "kube-system"
    labelled = pair()
    labelled.meta.labels["track"] = "canary-1"
    assert eng.evaluate(labelled).rule == "canary"
    assert eng.evaluate(pair(url="/healthz")).rule == "builtin:health-checks"
    ua = [("User-Agent", "kube-probe/1.30")]
    assert eng.evaluate(pair(url="/anything", headers=ua)).rule == "builtin:health-checks"
    assert eng.evaluate(pair(url="/metrics")).rule == "builtin:metrics-scrapes"
    assert eng.evaluate(pair(url="/api/metrics")).action == "keep"
    off = RuleEngine(parse("builtin: []\n"))
    assert off.evaluate(pair(url="/healthz")).action == "keep"


def test_sampling_is_per_service_and_deterministic() -> None:
    eng = RuleEngine(
        parse("""
sample:
  - {name: web, workload: "Deployment/web", rate: 0.25}
  - {name: none-of-batch, workload: "Job/*", rate: 0}
""")
    )
    web = [pair(pid=f"w-{i}", workload="Deployment/web") for i in range(400)]
    kept = [p.id for p in web if eng.apply(p) is not None]
    again = [p.id for p in web if eng.evaluate(p).action == "keep"]
    assert kept == again  # the same ids, every time
    assert 0 < len(kept) < 400
    assert all(eng.apply(pair(pid=f"j-{i}", workload="Job/x")) is None for i in range(20))
    assert all(eng.apply(pair(pid=f"o-{i}", workload="Deployment/api")) for i in range(20))


def test_redaction_keeps_lengths_and_is_stable() -> None:
    eng = RuleEngine(
        parse("""
redact:
  headers: [X-Api-Key]
  json_fields: [password, card.number, "*.ssn"]
  custom: [{name: order-id, regex: "ORD-[0-9]{6}"}]
  hash_key: test-key
""")
    )
    body = json.dumps(
        {
            "user": {"password": "hunter2", "email": "bob@example.org", "ssn": "123-45-6789"},
            "card": {"number": 4111111111111111, "exp": "12/30"},
            "ok": [1, 2, 3],
            "valid16": "1234567812345678",
            "order": "ORD-123456",
        }
    ).encode()
    headers = [
        ("Authorization", "Basic dXNlcjpwYXNz"),
        ("X-Api-Key", "k-123"),
        ("Referer", "https://x/?t=eyJhbGciOiJIUzI1.eyJzdWIiOiIxMjM0.c2lnbmF0dXJl"),
    ]
    a = pair(
        url="/u?mail=bob@example.org",
        headers=headers,
        body=body,
        res_headers=[("Set-Cookie", "sid=abc123; HttpOnly")],
        res_body=body,
    )
    b = pair(url="/u?mail=bob@example.org", headers=headers, body=body, res_body=body)
    d = eng.evaluate(a)
    assert d.redactions == [
        "redact:email",
        "redact:headers",
        "redact:json-fields",
        "redact:jwt",
        "redact:order-id",
    ]
    eng.apply(a)
    eng.apply(b)
    assert "redacted" in a.flags
    assert len(a.http.req.body) == len(body) and a.http.req.body == b.http.req.body
    doc = json.loads(a.http.req.body)
    assert doc["user"]["password"] != "hunter2" and len(doc["user"]["password"]) == 7
    assert doc["card"]["number"] != 4111111111111111
    assert len(str(doc["card"]["number"])) == 16  # still a number of the same width
    assert doc["card"]["exp"] == "12/30" and doc["ok"] == [1, 2, 3]
    assert doc["valid16"] == "1234567812345678"  # fails the Luhn check: not a card
    assert doc["user"]["ssn"] != "123-45-6789"
    assert "ORD-123456" not in a.http.req.body.decode()
    hv = {h.name: h.value for h in a.http.req.headers}
    assert hv["Authorization"] != "Basic dXNlcjpwYXNz" and len(hv["Authorization"]) == 18
    assert hv["X-Api-Key"] != "k-123"
    assert "eyJ" not in hv["Referer"] and hv["Referer"].startswith("https://x/?t=")
    assert "bob@example.org" not in a.http.req.url
    assert "abc123" not in a.http.res.headers[0].value
    assert a.http.res.body == a.http.req.body  # same secret, same token


def test_compressed_bodies_are_hashed_whole() -> None:
    eng = RuleEngine(parse("{}"))
    secret = gzip.compress(b'{"card": "4111 1111 1111 1111"}')
    p = pair(method="POST", headers=[("Content-Encoding", "gzip")], body=secret)
    eng.apply(p)
    assert p.http.req.body != secret and len(p.http.req.body) == len(secret)
    assert "redacted" in p.flags


def _matches(rule: str) -> float:
    return REGISTRY.get_sample_value("nodetap_rule_matches_total", {"rule": rule}) or 0.0


def test_metric_counts_matches_per_rule() -> None:
    eng = RuleEngine(parse("drop:\n  - {name: metric-test-drop, path: ^/gone}\n"))
    before, before_h = _matches("metric-test-drop"), _matches("redact:headers")
    for i in range(3):
        eng.apply(pair(url=f"/gone/{i}"))
    eng.apply(pair(headers=[("Cookie", "a=b")]))
    assert _matches("metric-test-drop") == before + 3
    assert _matches("redact:headers") == before_h + 1


def test_hot_reload_and_bad_reload_keeps_old_rules(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    f = tmp_path / "rules.yaml"
    f.write_text("drop:\n  - {name: a, path: ^/a}\n")
    eng = RuleEngine.from_file(str(f), reload_interval=0)
    assert eng.apply(pair(url="/a")) is None and eng.apply(pair(url="/b")) is not None
    f.write_text("drop:\n  - {name: b, path: ^/b}\n")
    os.utime(f, ns=(1, 10**18))  # a new mtime even within the same clock tick
    assert eng.maybe_reload() is True
    assert eng.apply(pair(url="/a")) is not None and eng.apply(pair(url="/b")) is None
    f.write_text("drop:\n  - {name: c, pth: ^/c}\n")
    os.utime(f, ns=(1, 2 * 10**18))
    with caplog.at_level(logging.ERROR, logger="agent.rules.engine"):
        assert eng.maybe_reload() is False
    assert f"{f}:2: drop[0]: unknown key 'pth'" in caplog.text
    assert eng.apply(pair(url="/b")) is None  # the previous rules stay in force
    # apply() itself notices changes (no restart, no explicit call)
    f.write_text("drop:\n  - {name: d, path: ^/d}\n")
    os.utime(f, ns=(1, 3 * 10**18))
    assert eng.apply(pair(url="/b")) is not None and eng.apply(pair(url="/d")) is None


def test_rules_check_cli_reports_per_rule(tmp_path: Path) -> None:
    f = tmp_path / "rules.yaml"
    f.write_text("drop:\n  - {name: no-debug, path: ^/debug}\n")
    cap = tmp_path / "cap.jsonl"
    with cap.open("w") as fp:
        for i, (url, hdrs) in enumerate(
            [
                ("/debug/1", []),
                ("/healthz", []),
                ("/api", [("Authorization", "Bearer x")]),
                ("/api", []),
            ]
        ):
            jsonl.write(fp, pair(url=url, headers=hdrs, pid=f"c-{i}"))
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "rules",
            "check",
            str(f),
            "--against",
            str(cap),
            "--details",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "4 RRPairs: 2 kept (1 redacted), 2 dropped, 0 sampled out" in r.stdout
    rows = {
        line.split()[0]: line.split()[1:5]
        for line in r.stdout.splitlines()
        if line.startswith(("no-debug", "builtin:health-checks", "redact:headers"))
    }
    assert rows == {
        "no-debug": ["1", "1", "0", "0"],
        "builtin:health-checks": ["1", "1", "0", "0"],
        "redact:headers": ["1", "0", "0", "1"],
    }
    assert "c-2  keep        rule=-  redact=redact:headers" in r.stdout


def test_example_rules_file_is_valid(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "cli", "rules", "example"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    f = tmp_path / "example.yaml"
    f.write_text(out)
    eng = RuleEngine.from_file(str(f))
    assert [r.name for r in eng.ruleset.drop] == ["no-admin", "no-kube-system"]
    assert eng.evaluate(pair(url="/internal/x", headers=[("Host", "admin.local")])).rule == (
        "no-admin"
    )
    assert "order-id" in eng.describe()


_NOISE = st.text(alphabet=st.sampled_from(list("0123456789 -@%4eyJBbearer.x_/")), max_size=40)
_CARDISH = st.lists(
    st.tuples(st.sampled_from("0123456789"), st.sampled_from(["", "", " ", "-"])),
    min_size=12,
    max_size=20,
).map(lambda xs: "".join(d + sep for d, sep in xs))
_BEARERISH = st.tuples(st.sampled_from(["Bearer", "bearer", "BEARER", "bEaReR"]), _NOISE).map(
    lambda t: f"{t[0]} tok{t[1]}"
)
_TEXT = st.lists(st.one_of(_NOISE, _CARDISH, _BEARERISH), max_size=4).map("".join)


@settings(max_examples=400, deadline=None)
@given(_TEXT)
def test_prefilters_never_hide_a_match(text: str) -> None:
    from agent.rules.patterns import BUILTIN_PATTERNS

    raw = text.encode("latin-1")
    for pat in BUILTIN_PATTERNS.values():
        if next(pat.spans(text), None) is not None:
            assert pat.quick is not None and pat.quick(raw), (pat.name, text)
