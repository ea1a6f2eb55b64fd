"""Sensitive data never leaves the node: real traffic with an Authorization header, a cookie,
a card number and an email in a JSON body goes through the agent's rules and sink; none of
those bytes exist in the spool or the forwarder's data directory afterwards. And
`nodetap rules check` reports exactly what the agent then applies."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nodetap import jsonl
from tests.forwarder.helpers import (
    ROOT,
    finish_producer,
    forwarder_process,
    grep_dir,
    read_until,
    start_producer,
    stop,
    stored,
)
from tests.forwarder.traffic import Req, exchange_pairs
from tests.support.servers import free_port, python_server_thread

BEARER = "tok-9f8e7d6c5b4a39281706f5e4d3c2b1a0"
COOKIE = "sess-1c2b3a4d5e6f7a8b9c0d"
CARD = "4111 1111 1111 1111"
EMAIL = "alice.secret@example.com"
PASSWORD = "pw-Tr0ub4dor-3"
SECRETS = [BEARER, COOKIE, CARD, CARD.replace(" ", ""), EMAIL, PASSWORD]

RULES = """\
builtin: [health-checks, metrics-scrapes]
drop:
  - name: no-debug
    path: "^/debug/"
sample:
  - name: half-of-browse
    path: "^/browse/"
    rate: 0.5
redact:
  json_fields: [password]
"""


def _capture(tmp_path: Path) -> Path:
    body = json.dumps(
        {
            "user": {"email": EMAIL, "password": PASSWORD},
            "card": {"number": CARD, "cvc": "123"},
            "items": [{"sku": "A-1", "qty": 2}],
            "note": f"backup card {CARD.replace(' ', '')}",
        }
    ).encode()
    reqs = []
    for i in range(6):
        reqs.append(
            Req(
                "POST",
                f"/api/pay?i={i}",
                [
                    ("Authorization", f"Bearer {BEARER}"),
                    ("Cookie", f"session={COOKIE}; theme=dark"),
                    ("Content-Type", "application/json"),
                ],
                body,
            )
        )
        reqs.append(Req("GET", f"/browse/{i}?contact={EMAIL}"))
        reqs.append(Req("GET", f"/browse/x{i}"))
        reqs.append(Req("GET", "/healthz", [("User-Agent", "kube-probe/1.30")]))
        reqs.append(Req("GET", "/metrics", [("User-Agent", "Prometheus/2.53")]))
        reqs.append(Req("GET", f"/debug/{i}"))
        reqs.append(Req("GET", f"/plain/{i}"))
    path = tmp_path / "capture.jsonl"
    wire = b""
    with python_server_thread() as srv, path.open("w") as fp:  # echoes request bodies
        for pair in exchange_pairs(srv.port, reqs):
            jsonl.write(fp, pair)
            wire += pair.SerializeToString()
    # Unredacted, every secret would be found by the grep below (protobuf keeps raw bytes).
    assert all(s.encode() in wire for s in SECRETS)
    return path


def _check(rules: Path, capture: Path) -> dict:  # type: ignore[type-arg]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "cli",
            "rules",
            "check",
            str(rules),
            "--against",
            str(capture),
            "--json",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return dict(json.loads(out.stdout))


@pytest.mark.slow
def test_secrets_never_leave_the_node_and_rules_check_predicts_the_agent(tmp_path: Path) -> None:
    capture = _capture(tmp_path)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    report = _check(rules, capture)
    assert report["pairs"] == 42 and report["dropped"] == 18  # health, metrics, debug
    assert 0 < report["sampled_out"] < 12

    # 1. The forwarder is down: everything goes through the agent's spool.
    port = free_port()
    spool = tmp_path / "spool"
    prod = start_producer(
        f"127.0.0.1:{port}",
        "--input",
        str(capture),
        "--rules",
        str(rules),
        "--spool-dir",
        str(spool),
        "--max-memory",
        "1",
        "--flush",
        "0.5",
        "--close",
        "0.2",
    )
    try:
        read_until(prod, "COUNTERS")
        agent_matches = json.loads(read_until(prod, "RULES").split(" ", 1)[1])
        prod.wait(30)
    finally:
        stop(prod)
    segs = list(spool.glob("*.seg"))
    assert segs and b"/api/pay" in b"".join(f.read_bytes() for f in segs)  # the data is there
    assert grep_dir(spool, [s.encode() for s in SECRETS]) == {}

    # The agent matched exactly what `rules check` reported, rule by rule.
    reported = {name: r["matched"] for name, r in report["rules"].items() if r["matched"]}
    assert agent_matches == reported

    # 2. The forwarder comes up; the next agent run resends the spool.
    data = tmp_path / "data"
    with forwarder_process(port, data):
        prod = start_producer(
            f"127.0.0.1:{port}", "--input", "/dev/null", "--spool-dir", str(spool), "--hold"
        )
        try:
            assert read_until(prod, "FLUSHED") == "FLUSHED true"
            finish_producer(prod)
        finally:
            stop(prod)
    # 3. And straight to a running forwarder, no spool involved.
    data2 = tmp_path / "data2"
    port2 = free_port()
    with forwarder_process(port2, data2):
        prod = start_producer(
            f"127.0.0.1:{port2}", "--input", str(capture), "--rules", str(rules), "--hold"
        )
        try:
            assert read_until(prod, "FLUSHED") == "FLUSHED true"
            finish_producer(prod)
        finally:
            stop(prod)

    keep = {d["id"]: d for d in report["decisions"] if d["action"] == "keep"}
    for directory in (data, data2):
        assert grep_dir(directory, [s.encode() for s in SECRETS]) == {}
        pairs = stored(directory)
        assert sorted(p.id for p in pairs) == sorted(keep)
        for p in pairs:
            assert ("redacted" in p.flags) == bool(keep[p.id]["redactions"])
            if p.http.req.method == "POST":
                req = p.http.req
                assert len(req.body) == req.body_size  # lengths kept: replay still works
                cl = next(h.value for h in req.headers if h.name == "Content-Length")
                assert int(cl) == len(req.body)
                body = json.loads(req.body)
                assert body["items"] == [{"sku": "A-1", "qty": 2}]  # untouched fields stay
                assert len(body["user"]["email"]) == len(EMAIL)
    # The same secret always gives the same token (stable hash): diffing still works.
    posts = [p for p in stored(data2) if p.http.req.method == "POST"]
    assert len({p.http.req.body for p in posts}) == 1
    assert len({p.http.res.body for p in posts}) == 1
