"""Secure defaults of the edge rules (issue 22): without a rules file the credential headers are
redacted and the RRPair flagged (an exchange without them keeps the fast path); seeing them
takes --no-redact, which warns; tokens are keyed by the installation's key, a 0600 file in a
0700 folder, never by a public constant."""

from __future__ import annotations

import argparse
import hashlib
import hmac
import io
import json
import os
import stat
from pathlib import Path

import pytest

from agent.pipeline import Pipeline, jsonl_writer
from agent.protocols.http1.types import HttpExchange, HttpRequest, HttpResponse
from agent.rrpairs import CapturedExchange, ConnContext
from agent.rules import RuleEngine, key, parse
from agent.rules.redact import Redactor
from cli.options import rules as rules_options
from nodetap.errors import ConfigError

SECRET = "Basic c2VjcmV0LXVzZXI6aHVudGVyMg=="


def _exchange(rid: str, req_headers: list[tuple[str, str]]) -> CapturedExchange:
    req = HttpRequest("GET", "/a", "HTTP/1.1", req_headers, b"", 0)
    res = HttpResponse(200, "OK", "HTTP/1.1", [("Set-Cookie", "sid=s3cr3t-cookie")], b"ok", 2)
    if not any(n.lower() == "authorization" for n, _ in req_headers):
        res.headers = [("Content-Length", "2")]
    ctx = ConnContext("INBOUND", "127.0.0.1", 40000, "127.0.0.1", 8080, "syscall")
    return CapturedExchange(HttpExchange(req, res), ctx, rid)


def _args(*argv: str) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    rules_options.add_arguments(p)
    return p.parse_args(list(argv))


@pytest.fixture
def key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "conf" / "nodetap" / "redaction.key"
    monkeypatch.setenv(key.ENV, str(path))
    return path


def test_credentials_redacted_without_rules_and_flagged(key_file: Path) -> None:
    engine = rules_options.from_args(_args())
    assert engine is not None and engine.headers_only is not None
    out = io.StringIO()
    pipe = Pipeline(jsonl_writer(out), rules=engine, jsonl_out=out)
    plain = _exchange("plain", [("Host", "x"), ("Accept", "*/*")])
    pipe.on_exchange(plain)
    pipe.on_exchange(_exchange("secret", [("Host", "x"), ("Authorization", SECRET)]))
    lines = out.getvalue().splitlines()
    assert lines[0] == plain.json_line()  # no credential: the fast path, unchanged
    assert SECRET not in out.getvalue() and "s3cr3t-cookie" not in out.getvalue()
    doc = json.loads(lines[1])
    assert "redacted" in doc["flags"]
    auth = doc["http"]["req"]["headers"][1]["value"]
    assert len(auth) == len(SECRET)
    assert auth == Redactor(parse("{}").redact, key_file.read_bytes().strip()).token(SECRET, 34)


def test_no_redact_warns_and_keeps_credentials(
    key_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert rules_options.from_args(_args("--no-redact")) is None
    err = capsys.readouterr().err
    assert "warning: --no-redact" in err and "Authorization" in err
    out = io.StringIO()
    pipe = Pipeline(jsonl_writer(out), rules=None, jsonl_out=out)
    pipe.on_exchange(_exchange("secret", [("Authorization", SECRET)]))
    assert SECRET in out.getvalue()
    with pytest.raises(ConfigError, match="--no-redact and --rules"):
        rules_options.from_args(_args("--no-redact", "--rules", "r.yaml"))


def test_key_file_is_created_private_and_kept(key_file: Path) -> None:
    k1 = key.load()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    assert key.load() == k1 and len(k1) >= 32
    os.environ[key.ENV] = str(key_file.parent / "other.key")
    assert key.load() != k1  # another installation, another key


def test_tokens_depend_on_the_key_not_a_public_constant(tmp_path: Path) -> None:
    pin = "4821"
    rs = parse("redact:\n  json_fields: [pin]\n")
    a, b = Redactor(rs.redact, b"a" * 32), Redactor(rs.redact, b"b" * 32)
    assert a.token(pin, 4) != b.token(pin, 4)
    old = hmac.new(b"nodetap-default-redaction-key", pin.encode(), hashlib.sha256).hexdigest()
    for eng in (RuleEngine(rs), RuleEngine(rs, key=b"x" * 32)):
        assert eng._compiled.redactor.token(pin, 4) != old[:4]
    assert parse("{}").redact.hash_key is None  # the installation's key, unless a file says
    sources = Path(__file__).resolve().parents[2] / "agent" / "rules"
    assert not any("nodetap-default-redaction-key" in f.read_text() for f in sources.glob("*.py"))


def test_given_key_file_must_be_usable(tmp_path: Path) -> None:
    short = tmp_path / "short.key"
    short.write_bytes(b"abc")
    with pytest.raises(ConfigError, match="it must hold 16 to 4096"):
        key.load(str(short))
    with pytest.raises(ConfigError, match="cannot read the redaction key"):
        key.load(str(tmp_path / "missing.key"))
    good = tmp_path / "k"
    good.write_bytes(b"0123456789abcdef0123\n")
    good.chmod(0o600)
    assert rules_options.from_args(_args("--redaction-key", str(good))) is not None


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o602])
def test_key_file_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    k = tmp_path / "k"
    k.write_bytes(b"0123456789abcdef0123\n")
    k.chmod(mode)
    with pytest.raises(ConfigError, match=r"readable or writable by every user.*chmod 600"):
        rules_options.from_args(_args("--redaction-key", str(k)))


def test_mounted_secret_key_gives_the_same_token_on_every_node(tmp_path: Path) -> None:
    """Two agents (two nodes) with the Secret the install Job makes, mounted the way Kubernetes
    mounts it (a 0400 file behind ..data symlinks): the same secret, the same token."""
    from forwarder import k8s_secrets

    data = k8s_secrets.make_redaction_key()
    tokens = []
    for node in ("node-a", "node-b"):
        mount = tmp_path / node
        (mount / "..2026_12_04").mkdir(parents=True)
        (mount / "..2026_12_04" / "redaction.key").write_bytes(data)
        (mount / "..2026_12_04" / "redaction.key").chmod(0o400)
        (mount / "..data").symlink_to("..2026_12_04")
        (mount / "redaction.key").symlink_to("..data/redaction.key")
        engine = rules_options.from_args(_args("--redaction-key", str(mount / "redaction.key")))
        assert engine is not None
        tokens.append(engine._compiled.redactor.token(SECRET, len(SECRET)))
    assert tokens[0] == tokens[1] != SECRET
    assert data.strip() == key.load(str(tmp_path / "node-a" / "redaction.key"))
