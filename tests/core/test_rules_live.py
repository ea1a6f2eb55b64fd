"""The edge rules run inside the core decoder during a live capture (issue 19 item 2, issue
20 item 4), with real peers: HTTP/2 headers (nghttpd, curl --http2-prior-knowledge) and
gRPC metadata (a grpcio call with an `authorization` metadata) redacted by the core before
it encodes the RRPair; a rules file reloaded while capturing swaps the core's rules (a bad
one keeps them); and the same rules file gives the same RRPairs on `NODETAP_DECODER=python` and
the default core for nginx and curl (HTTP/1)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.rules import RuleEngine, parse
from nodetap import jsonl
from nodetap.v1 import rrpair_pb2 as pb
from tests.forwarder.helpers import ROOT, start_capture, stop
from tests.rules.test_yaml_limits import DEEP
from tests.support.capture import LiveCapture, live_capture
from tests.support.nghttpd import nghttpd
from tests.support.servers import nginx

pytestmark = [pytest.mark.bpf, pytest.mark.root]

KEY = b"rules-live-test-key-0123456789"
H2_BEARER = "h2-bearer-6d1f0c9a3b7e"
H2_COOKIE = "h2-cookie-8a2e5c7d1f40"
GRPC_BEARER = "grpc-bearer-5b9e2d7c4a13"
GRPC_KEY = "grpc-apikey-3c7a9e1d5b20"


def _engine(text: str) -> RuleEngine:
    return RuleEngine(parse(text), announce=False, key=KEY)


def _header(p: pb.RRPair, name: str) -> str:
    return {h.name: h.value for h in p.http.req.headers}[name]


def _no_secret(pairs: list[pb.RRPair], *secrets: str) -> None:
    for p in pairs:
        raw = p.SerializeToString()
        for s in secrets:
            assert s.encode() not in raw, (s, p)


def test_h2_headers_redacted_and_dropped_in_the_core(tmp_path: Path) -> None:
    engine = _engine("drop:\n  - {name: no-big, path: ^/big}\n")
    with nghttpd(tmp_path) as port, live_capture(rules=engine, ports=[port]) as lc:
        for path in ("/index.html", "/big.bin"):
            subprocess.run(
                ["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null",
                 "-H", f"Authorization: Bearer {H2_BEARER}",
                 "-H", f"Cookie: sid={H2_COOKIE}", f"http://127.0.0.1:{port}{path}"],
                check=True, timeout=60,
            )  # fmt: skip
        lc.wait_for(2, where=lambda p: p.l7protocol == "http2")
        lc.settle()
        summary = lc.cap.summary()
    pairs = [p for p in lc.pairs if p.l7protocol == "http2"]
    assert sorted(p.direction for p in pairs) == [pb.INBOUND, pb.OUTBOUND]
    for p in pairs:
        assert p.http.req.url == "/index.html" and "redacted" in p.flags
        auth, cookie = _header(p, "authorization"), _header(p, "cookie")
        assert len(auth) == len(f"Bearer {H2_BEARER}") and len(cookie) == len(f"sid={H2_COOKIE}")
    _no_secret(pairs, H2_BEARER, H2_COOKIE)
    assert summary["rules_dropped"] == 2 and summary["rules_redacted"] == 2, summary


GRPC_CLIENT = """
import sys, grpc
port = int(sys.argv[1])
with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
    call = ch.unary_unary("/test.Echo/Unary")
    out = call(b"hello grpc", metadata=(("authorization", "Bearer %s"), ("x-api-key", "%s")))
    assert out == b"cprg olleh", out
"""

GRPC_SERVER = """
import sys, time
from tests.support.peers import grpc_echo
server, port = grpc_echo.serve()
print(port, flush=True)
sys.stdin.read()
server.stop(0)
"""


@pytest.fixture
def grpc_server() -> Iterator[int]:
    """The grpcio echo server in a process of its own (a capture leaves its own process out)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", GRPC_SERVER], cwd=ROOT, stdin=subprocess.PIPE,
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait(timeout=10)


def test_grpc_metadata_redacted_in_the_core(grpc_server: int) -> None:
    engine = _engine("redact:\n  headers: [X-Api-Key]\n")
    with live_capture(rules=engine, ports=[grpc_server]) as lc:
        code = GRPC_CLIENT % (GRPC_BEARER, GRPC_KEY)
        subprocess.run([sys.executable, "-c", code, str(grpc_server)], check=True, timeout=60)
        lc.wait_for(2, where=lambda p: p.l7protocol == "grpc")
        lc.settle()
    pairs = [p for p in lc.pairs if p.l7protocol == "grpc"]
    assert sorted(p.direction for p in pairs) == [pb.INBOUND, pb.OUTBOUND]
    for p in pairs:
        assert (p.grpc.service, p.grpc.method, p.grpc.status) == ("test.Echo", "Unary", 0)
        assert list(p.grpc.request_messages) == [b"hello grpc"]
        assert list(p.grpc.response_messages) == [b"cprg olleh"]
        assert "redacted" in p.flags
        assert len(_header(p, "authorization")) == len(f"Bearer {GRPC_BEARER}")
        assert len(_header(p, "x-api-key")) == len(GRPC_KEY)
    _no_secret(pairs, GRPC_BEARER, GRPC_KEY)


def _curl(url: str, *args: str) -> None:
    subprocess.run(["curl", "-sS", "-o", "/dev/null", *args, url], check=True, timeout=30)


def _write(path: Path, text: str, stamp: int) -> None:
    path.write_text(text)
    os.utime(path, ns=(stamp, stamp))  # a new mtime even within the clock's resolution


def test_reload_swaps_the_core_rules(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    _write(rules, "redact:\n  headers: [X-Token]\n", 10**18)
    engine = RuleEngine.from_file(str(rules), reload_interval=0.05, announce=False, key=KEY)

    def wait_url(lc: LiveCapture, url: str) -> list[pb.RRPair]:
        return lc.wait_for(2, where=lambda p: p.http.req.url == url)

    with nginx() as web, live_capture(rules=engine, ports=[web.port]) as lc:
        _curl(web.url + "/one", "-H", "X-Token: tok-one")
        first = wait_url(lc, "/one")
        _write(rules, "drop:\n  - {name: no-gone, path: ^/gone}\n", 2 * 10**18)
        time.sleep(0.3)  # past the reload interval: the next batch reloads
        _curl(web.url + "/gone")
        _curl(web.url + "/two", "-H", "X-Token: tok-two")
        second = wait_url(lc, "/two")
        _write(rules, DEEP, 3 * 10**18)  # refused: the drop rule stays
        time.sleep(0.3)
        _curl(web.url + "/gone")
        _curl(web.url + "/three")
        wait_url(lc, "/three")
        lc.settle()
        summary = lc.cap.summary()
    assert all(_header(p, "X-Token") != "tok-one" for p in first)
    assert all(_header(p, "X-Token") == "tok-two" for p in second)  # no longer redacted
    assert not [p for p in lc.pairs if p.http.req.url == "/gone"]
    assert summary["rules_dropped"] == 4, summary
    assert "no-gone]" in engine.describe()  # the bad file was refused


DIFF_RULES = textwrap.dedent("""\
    drop:
      - {name: no-private, path: ^/private}
    sample:
      - {name: none-sampled, path: ^/sampled, rate: 0}
    redact:
      headers: [X-Api-Key]
      json_fields: [password, "*.ssn"]
      patterns: [email]
      custom:
        - {name: order-id, regex: "ORD-[0-9]{6}"}
""")

ECHO_CONF = """
location /login {
    default_type application/json;
    return 200 '{"password": "p4ssw0rd", "user": {"ssn": "078-05-1120"}, "mail": "x@y.example"}';
}
"""


def _comparable(pairs: list[pb.RRPair]) -> list[tuple[object, ...]]:
    """What both decoders must agree on, in a stable order (ids, times and client ports
    differ between two captures)."""
    out = []
    for p in pairs:
        h = [(h.name, h.value) for h in p.http.req.headers]
        r = [(h.name, h.value) for h in p.http.res.headers]
        out.append((
            p.direction, p.l7protocol, p.http.req.method, p.http.req.url, h,
            p.http.req.body, p.http.res.status_code, r, p.http.res.body, sorted(p.flags),
        ))  # fmt: skip
    return sorted(out, key=repr)


def test_same_rules_same_rrpairs_on_python_and_core(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(DIFF_RULES)
    body = json.dumps({"password": "hunter2", "card": {"ssn": "123-45-6789"}, "n": 1})
    with nginx(extra=ECHO_CONF) as web:
        caps = {}
        for dec in ("python", "core"):
            caps[dec] = start_capture(
                "--port", str(web.port), "--rules", str(rules),
                "--redaction-key", str(_key_file(tmp_path)), "-c", "10",
                "-w", str(tmp_path / f"{dec}.jsonl"),
                "--summary-json", str(tmp_path / f"{dec}.summary.json"),
                env={"NODETAP_DECODER": dec},  # the Python record loop has no flag
            )  # fmt: skip
        try:
            _curl(web.url + "/private/x")
            _curl(web.url + "/sampled/1")
            login = ["-H", "Content-Type: application/json", "-d", body, "-H", "X-Api-Key: k-123"]
            _curl(web.url + "/login", *login, "-H", "Authorization: Basic dXNlcjpwYXNz")
            _curl(web.url + "/page?mail=bob@example.com&o=ORD-123456")
            _curl(web.url + "/plain")
            for cap in caps.values():
                cap.wait(timeout=60)
        finally:
            for cap in caps.values():
                stop(cap)
        errs = {d: c.stderr.read() if c.stderr else "" for d, c in caps.items()}
    assert all(c.returncode == 0 for c in caps.values()), errs
    got = {d: list(jsonl.read_path(str(tmp_path / f"{d}.jsonl"))) for d in caps}
    assert len(got["core"]) == 6, errs  # 3 exchanges kept, each seen by nginx and by curl
    assert _comparable(got["core"]) == _comparable(got["python"])
    redacted = [p for p in got["core"] if "redacted" in p.flags]
    assert len(redacted) == 4  # /login and /page, both sides
    secrets = (b"hunter2", b"p4ssw0rd", b"k-123", b"ORD-123456", b"bob@", b"dXNlcjpwYXNz")
    assert not [s for p in got["core"] for s in secrets if s in p.SerializeToString()]
    summaries = {d: json.loads((tmp_path / f"{d}.summary.json").read_text()) for d in caps}
    assert summaries["core"]["rules_dropped"] == summaries["python"]["rules_dropped"] == 4
    assert summaries["core"]["rules_redacted"] == 4  # counted by the core's rules


def _key_file(tmp_path: Path) -> Path:
    key = tmp_path / "redaction.key"
    if not key.exists():
        key.write_bytes(KEY)
        key.chmod(0o600)
    return key
