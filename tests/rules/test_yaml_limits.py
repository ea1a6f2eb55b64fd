"""Rules files are YAML read within limits (issue 22, Medium): deep nesting and alias bombs are
refused with the line and the reason (before: RecursionError, which killed the capture on a
live reload; 688 MB of memory at 8 levels of aliases), a refused reload keeps the old rules,
and `rules check` says so in one line."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.rules import RuleEngine, RuleError, load, parse
from agent.rules.yaml_limits import MAX_DEPTH
from nodetap.v1 import rrpair_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]

DEEP = "drop:\n  - name: x\n    labels: " + "[" * 200_000 + "]" * 200_000 + "\n"
DEEP_BLOCK = "".join(f"{'  ' * i}k{i}:\n" for i in range(MAX_DEPTH + 5)) + "  " * 70 + "v\n"


def _bomb(levels: int = 8) -> str:
    """Labels of a drop rule, 9 aliases per level (before: accepted, 688 MB at 8 levels)."""
    lines = ["drop:", "  - name: bomb", "    labels:"]
    lines.append('      a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]')
    for i in range(1, levels + 1):
        refs = ", ".join([f"*a{i - 1}"] * 9)
        lines.append(f"      a{i}: &a{i} [{refs}]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        (DEEP, 3, f"nested deeper than {MAX_DEPTH} levels"),
        (DEEP_BLOCK, MAX_DEPTH + 1, f"nested deeper than {MAX_DEPTH} levels"),
        (_bomb(), 9, "once aliases are expanded (an alias bomb?)"),
        ("a: &r [*r]\n", 1, "recursive alias *r"),
        ("drop: *nothing\n", 1, "alias *nothing names no anchor"),
    ],
)
def test_yaml_beyond_limits_is_refused_with_line_and_reason(
    text: str, line: int, reason: str
) -> None:
    with pytest.raises(RuleError) as err:
        parse(text, "r.yaml")
    assert str(err.value).startswith(f"r.yaml:{line}: "), str(err.value)[:200]
    assert reason in str(err.value)


def test_small_aliases_still_work() -> None:
    rs = parse(
        "drop:\n"
        "  - {name: a, namespace: &ns [shop, cart], path: ^/a}\n"
        "  - {name: b, namespace: *ns, path: ^/b}\n"
    )
    assert rs.drop[1].match.namespace == ["shop", "cart"]


def test_oversized_file_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "big.yaml"
    f.write_text("# " + "x" * (2 << 20) + "\n")
    with pytest.raises(RuleError, match="larger than 1024 KiB"):
        load(str(f))


def _pair(url: str) -> pb.RRPair:
    p = pb.RRPair(id="x", l7protocol="http")
    p.http.req.method, p.http.req.url = "GET", url
    return p


@pytest.mark.parametrize("bad", [DEEP, _bomb(), "a: &r [*r]\n"])
def test_bad_reload_keeps_the_old_rules(
    tmp_path: Path, bad: str, caplog: pytest.LogCaptureFixture
) -> None:
    f = tmp_path / "rules.yaml"
    f.write_text("drop:\n  - {name: a, path: ^/a}\n")
    eng = RuleEngine.from_file(str(f), reload_interval=0)
    f.write_text(bad)
    os.utime(f, ns=(1, 10**18))
    with caplog.at_level(logging.ERROR, logger="agent.rules.engine"):
        assert eng.apply(_pair("/a")) is None  # apply() reloads: refused, old rules kept
    assert "keeping the previous rules" in caplog.text
    assert eng.apply(_pair("/b")) is not None


def test_reload_survives_any_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "rules.yaml"
    f.write_text("drop:\n  - {name: a, path: ^/a}\n")
    eng = RuleEngine.from_file(str(f), reload_interval=0)

    def boom(path: str) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr("agent.rules.engine.load", boom)
    f.write_text("drop:\n  - {name: b, path: ^/b}\n")
    os.utime(f, ns=(1, 10**18))
    assert eng.maybe_reload() is False
    assert eng.apply(_pair("/a")) is None


@pytest.mark.parametrize("text", [DEEP, _bomb(9)])
def test_rules_check_says_one_line(tmp_path: Path, text: str) -> None:
    f = tmp_path / "rules.yaml"
    f.write_text(text)
    r = subprocess.run(
        [sys.executable, "-m", "cli", "rules", "check", str(f)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr[:2000]
    assert "Traceback" not in r.stderr and str(f) in r.stderr
