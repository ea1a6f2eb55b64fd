"""`nodetap netsetup`: what nodetap owns on the node (rules, tc filters, pinned BPF objects),
cleaning up after a crash, conntrack pre-flight and stale entries."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from nodetap.errors import ConfigError

EPILOG = """\
examples:
  nodetap netsetup status                 # rules, tc filters, pins nodetap owns
  nodetap netsetup clean                  # remove those of nodetap processes that are gone
  nodetap netsetup clean --all            # remove everything tagged nodetap
  nodetap netsetup conntrack              # table size, fill, TIME_WAIT, ceiling, per-CPU stats
  nodetap netsetup stale 10.0.0.5:8080    # entries left towards a target by earlier runs
  nodetap netsetup stale 10.0.0.5:8080 --flush
  nodetap netsetup backend                # nft or legacy iptables on this node

Nothing without nodetap's tag (comment 'nodetap:<owner>:<pid>', table 'inet nodetap',
tc filters and pins named nodetap*) is ever touched.
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "netsetup",
        help="nodetap's rules, tc filters and conntrack: status, clean, pre-flight, stale entries",
        description="Inspect and clean what nodetap owns on the node; conntrack checks.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _shared(p, None)
    verbs = p.add_subparsers(dest="verb", metavar="VERB")
    status = verbs.add_parser("status", help="list what nodetap owns")
    c = verbs.add_parser("clean", help="remove leftovers of nodetap processes that are gone")
    c.add_argument("--all", action="store_true", help="remove everything nodetap owns")
    conntrack = verbs.add_parser("conntrack", help="conntrack pre-flight: size, fill, ceiling")
    s = verbs.add_parser("stale", help="conntrack entries left towards a target")
    s.add_argument("target", metavar="IP:PORT")
    s.add_argument("--flush", action="store_true", help="delete exactly those entries")
    backend = verbs.add_parser("backend", help="print the iptables back end: nft or legacy")
    for verb in (status, c, conntrack, s, backend):
        _shared(verb, argparse.SUPPRESS)  # `netsetup status --json` as `netsetup --json status`
    p.set_defaults(func=run)


def _shared(p: argparse.ArgumentParser, default: Any) -> None:
    """--netns and --json, accepted before and after the verb (suppressed defaults after)."""
    p.add_argument(
        "--netns",
        metavar="NAME",
        default=default,
        help="work in this network namespace",
    )
    p.add_argument(
        "--json",
        action="store_true",
        default=False if default is None else default,
        help="JSON output",
    )


def _target(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise ConfigError(f"target {text!r}: give IP:PORT ([IPv6]:PORT)")
    return host, int(port)


def _out(args: argparse.Namespace, data: Any, lines: list[str]) -> None:
    if args.json:
        json.dump(data, sys.stdout, indent=2, default=str)
        print()
    else:
        print("\n".join(lines))


def run(args: argparse.Namespace) -> int:
    from netsetup import owned
    from netsetup.backend_detect import detect_backend
    from netsetup.netns import in_netns

    verb = args.verb or "status"
    if verb == "backend":
        print(in_netns(args.netns, detect_backend))
        return 0
    if verb == "status":
        st = owned.status(args.netns)
        _out(args, st.to_dict(), st.lines() or ["nodetap owns nothing here"])
        return 0
    if verb == "clean":
        gone = owned.clean(args.netns, all_owners=args.all)
        _out(args, gone.to_dict(), [f"removed {x}" for x in gone.lines()] or ["nothing to clean"])
        return 0
    from netsetup import conntrack

    if verb == "conntrack":
        pf = conntrack.preflight(args.netns)
        with conntrack.Monitor(args.netns) as mon:
            s = mon.sample()
        lines = [*pf.lines(), " ".join(f"{k} {getattr(s, k)}" for k in conntrack.STAT_KEYS)]
        _out(args, {"preflight": pf.to_dict(), "stats": s.to_dict()}, lines)
        return 0
    if verb == "stale":
        ip, port = _target(args.target)
        found = (conntrack.flush_stale if args.flush else conntrack.find_stale)(
            ip, port, args.netns
        )
        head = f"{'deleted' if args.flush else 'found'} {len(found)} stale entries"
        _out(args, [str(e) for e in found], [head, *(f"  {e}" for e in found)])
        return 0
    raise ConfigError(f"unknown verb {verb!r}; see nodetap netsetup --help")
