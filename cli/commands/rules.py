"""`nodetap rules check`: validate an edge-rules file and show what it does to a capture."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from cli.options.output import add_format_argument
from nodetap.errors import InputError

EPILOG = """\
examples:
  nodetap rules example > rules.yaml                        # a commented starting point
  nodetap rules check rules.yaml                            # validate; print the active set
  nodetap rules check rules.yaml --against capture.jsonl    # what each rule drops/samples/redacts
  nodetap rules check rules.yaml --against capture.jsonl --details   # one line per RRPair
  nodetap rules check rules.yaml --against capture.jsonl --json

A bad file is refused with its line and the reason (exit 2): also regular expressions that
need backtracking (lookaround, backreferences: patterns run in linear time, on RE2), YAML
nested deeper than 64 levels or expanding past 100000 values through aliases. The agent takes
the same file with `nodetap capture --rules rules.yaml` and reloads it when it changes (a bad
version is refused and the previous rules stay in force). Without --rules the agent redacts
the credential headers all the same.
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "rules",
        help="check edge rules (filter, sampling, redaction)",
        description="Work with edge-rules files (YAML).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="rules_cmd", metavar="ACTION", required=True)
    c = sub.add_parser(
        "check",
        help="validate a rules file; with --against, show what it would do to a capture",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    c.add_argument("file", help="rules file (YAML)")
    c.add_argument("--against", metavar="CAPTURE.jsonl", help="a JSONL capture to evaluate")
    add_format_argument(
        c, ("table", "json"), "table", help="table; json: a machine-readable report"
    )
    c.add_argument(
        "--json", dest="format", action="store_const", const="json", help="same as -o json"
    )
    c.add_argument("--details", action="store_true", help="one line per RRPair")
    c.set_defaults(func=run_check)
    e = sub.add_parser("example", help="print a commented example rules file")
    e.set_defaults(func=run_example)


def run_example(args: argparse.Namespace) -> int:
    from agent.rules.example import EXAMPLE

    sys.stdout.write(EXAMPLE)
    return 0


def _print_report(rep: Any, details: bool) -> None:
    out = sys.stdout
    print(
        f"{rep.pairs} RRPairs: {rep.kept} kept ({rep.redacted} redacted), "
        f"{rep.dropped} dropped, {rep.sampled_out} sampled out",
        file=out,
    )
    print(f"{'rule':<32} {'matched':>8} {'dropped':>8} {'sampled':>8} {'redacted':>9}  examples")
    for name, s in rep.rules.items():
        ex = ", ".join(s.examples)
        print(f"{name:<32} {s.matched:>8} {s.dropped:>8} {s.sampled_out:>8} {s.redacted:>9}  {ex}")
    if details:
        for d in rep.decisions:
            why = d["rule"] or "-"
            red = ",".join(d["redactions"]) or "-"
            print(f"{d['id']}  {d['action']:<10}  rule={why}  redact={red}")


def run_check(args: argparse.Namespace) -> int:
    from agent.rules.check import check, cost_warnings
    from agent.rules.engine import RuleEngine
    from nodetap import jsonl

    engine = RuleEngine.from_file(args.file, reload_interval=1e9, announce=False)
    warnings = cost_warnings(engine)
    for w in warnings:
        print(f"nodetap rules check: warning: {w}", file=sys.stderr)
    if not args.against:
        if args.format == "json":
            print(json.dumps({"valid": True, "active": engine.describe(), "warnings": warnings}))
        else:
            print(f"{args.file}: valid")
            print(f"active: {engine.describe()}")
        return 0
    try:
        rep = check(engine, jsonl.read_path(args.against))
    except FileNotFoundError:
        raise InputError(f"capture file {args.against} not found") from None
    except jsonl.CaptureFormatError as e:
        raise InputError(f"{e}; is this a nodetap JSONL capture?") from None
    if args.format == "json":
        doc = {"valid": True, "active": engine.describe(), "warnings": warnings}
        print(json.dumps({**doc, **rep.to_dict()}))
    else:
        print(f"{args.file}: valid")
        print(f"active: {engine.describe()}")
        _print_report(rep, args.details)
    return 0
