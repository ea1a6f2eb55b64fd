"""Habits users bring (issue 25): `--version`, global flags after the subcommand, and a
subcommand group's flags after its verb."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from cli.main import build_parser

REPO = Path(__file__).resolve().parents[2]


def nodetap(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_version() -> None:
    r = nodetap("--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"nodetap {metadata.version('nodetap')}"


@pytest.mark.parametrize(
    ("argv", "verbose"),
    [
        (["rules", "example"], 0),
        (["-v", "rules", "example"], 1),
        (["rules", "example", "-v"], 1),
        (["rules", "-vv", "example"], 2),
        (["-vv", "status"], 2),
        (["status", "-v"], 1),
        (["netsetup", "status", "-vv"], 2),
    ],
)
def test_verbose_before_or_after_the_subcommand(argv: list[str], verbose: int) -> None:
    args = build_parser().parse_args(argv)
    assert getattr(args, "verbose", 0) == verbose


@pytest.mark.parametrize(
    "argv",
    [["netsetup", "--json", "backend"], ["netsetup", "backend", "--json"]],
)
def test_netsetup_json_before_or_after_the_verb(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert args.json is True
    assert args.netns is None


def test_netsetup_netns_after_the_verb() -> None:
    args = build_parser().parse_args(["netsetup", "status", "--netns", "lab"])
    assert args.netns == "lab"
    assert args.json is False


def test_verbose_after_the_subcommand_runs() -> None:
    r = nodetap("netsetup", "backend", "-v")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() in ("nft", "legacy")
