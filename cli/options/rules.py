"""--rules FILE: the agent's edge rules (agent/rules/), for `nodetap capture`."""

from __future__ import annotations

import argparse

from agent.rules import RuleEngine


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--rules FILE."""
    parser.add_argument(
        "--rules",
        metavar="FILE",
        help="edge rules (YAML): drop, sample and redact before anything leaves the node; "
        "reloaded on change (check a file with: nodetap rules check FILE)",
    )


def from_args(args: argparse.Namespace) -> RuleEngine | None:
    """A RuleEngine from --rules, or None without it."""
    path = getattr(args, "rules", None)
    return RuleEngine.from_file(path) if path else None
