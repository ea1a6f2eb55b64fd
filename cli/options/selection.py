"""kubectl's selectors wherever RRPairs are selected: `-n NAMESPACE` and `-l SELECTOR`.

The same two flags on capture, export (and its live tail), snapshot create and replay; they
become items of forwarder/filters.py's Filter (`namespace=A,B`, `label=app=web,tier!=db`),
so every command selects with the same matcher as the forwarder.
"""

from __future__ import annotations

import argparse
from typing import Any

from forwarder.filters import matches, parse_filters
from nodetap.v1 import forwarder_pb2 as fpb
from nodetap.v1 import rrpair_pb2 as pb


def add_arguments(p: Any) -> None:
    """-n/--namespace (repeatable: any of them) and -l/--selector (all of them)."""
    p.add_argument(
        "-n",
        "--namespace",
        metavar="NAMESPACE",
        action="append",
        default=[],
        dest="namespaces",
        help="only RRPairs of pods in this namespace (as kubectl -n; repeatable: any of them)",
    )
    p.add_argument(
        "-l",
        "--selector",
        metavar="SELECTOR",
        action="append",
        default=[],
        dest="selectors",
        help="only RRPairs of pods whose labels match (as kubectl -l): app=web,tier!=db,canary,"
        "!legacy (a comma means all of them; repeatable)",
    )


def items(args: argparse.Namespace) -> list[str]:
    """-n and -l as Filter items (after those of --filter, when the command has it)."""
    out = list(getattr(args, "filter", None) or [])
    if args.namespaces:
        out.append("namespace=" + ",".join(args.namespaces))
    out += [f"label={s}" for s in args.selectors]
    return out


def given(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "namespaces", None) or getattr(args, "selectors", None))


class SelectingRules:
    """Edge rules with the -n/-l selection in front (capture): an RRPair of another pod is
    dropped before the rules, the forwarder and the output see it (counted apart)."""

    def __init__(self, flt: fpb.Filter, inner: Any) -> None:
        self.flt = flt
        self.inner = inner
        self.not_selected = 0

    @property
    def headers_only(self) -> None:
        return None  # every exchange is looked at (its pod's namespace and labels)

    def apply(self, pair: pb.RRPair) -> pb.RRPair | None:
        if not matches(self.flt, pair, check_time=False):
            self.not_selected += 1
            return None
        return pair if self.inner is None else self.inner.apply(pair)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def selecting_rules(args: argparse.Namespace, inner: Any) -> Any:
    """The capture's rules, behind a SelectingRules when -n or -l is given."""
    if not given(args):
        return inner
    return SelectingRules(parse_filters(items(args)), inner)
