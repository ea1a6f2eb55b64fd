"""The flags of a replay plan (capture, selection, target, schedule, rewrite, compare,
conntrack) and the replay.plan.Plan they make; `nodetap replay` (cli/commands/replay.py)
adds its output, mocks and distributed flags."""

from __future__ import annotations

import argparse
from typing import Any

from cli.options import selection, units
from nodetap.errors import ConfigError


def add_plan_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("capture", nargs="?", help="RRPair JSONL capture ('-' for stdin; or --snapshot)")
    p.add_argument(
        "-r",
        "--read",
        dest="read",
        metavar="FILE",
        help="the capture to replay (as tcpdump -r; the same as the positional CAPTURE)",
    )
    sel = p.add_argument_group("selection (which recorded RRPairs are replayed)")
    selection.add_arguments(sel)
    sel.add_argument(
        "--filter",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="as export --filter (method, url, status, pod, ...)",
    )
    p.add_argument(
        "--target",
        required=True,
        metavar="URL",
        help="http://HOST:PORT to replay to (https://HOST:PORT: every request over TLS, verified)",
    )
    p.add_argument(
        "--target-ca",
        metavar="PEM",
        help="CA certificate to verify an https:// target with (default: the system's CAs)",
    )
    s = p.add_argument_group("schedule")
    s.add_argument(
        "--timing",
        choices=("original", "asap"),
        help="original: keep the recorded gaps; asap (default): as fast as the vusers go",
    )
    s.add_argument(
        "--speed",
        help="replay the recorded gaps faster (2x halves them); implies --timing original",
    )
    s.add_argument("--rate", metavar="N/s", help="fixed rate, overrides --timing")
    s.add_argument("--vusers", type=int, default=16, help="concurrent virtual users (default 16)")
    s.add_argument(
        "--duration", type=units.positive_duration, metavar="TIME", help="stop after (30s, 5m)"
    )
    s.add_argument(
        "--loop",
        nargs="?",
        type=int,
        const=0,
        default=1,
        metavar="N",
        help="replay the capture N times (no N: until --duration)",
    )
    s.add_argument(
        "--connection", choices=("keepalive", "close", "as-recorded"), default="keepalive"
    )
    s.add_argument("--processes", type=int, default=0, help="client processes (default: CPUs)")
    s.add_argument(
        "--timeout",
        type=units.positive_duration,
        default=10.0,
        metavar="TIME",
        help="per request (default 10s)",
    )
    r = p.add_argument_group("rewrite")
    r.add_argument("--host-map", action="append", metavar="OLD=NEW", help="recorded Host -> Host")
    r.add_argument("--set-header", action="append", metavar="'NAME: VALUE'")
    r.add_argument("--remove-header", action="append", metavar="NAME")
    r.add_argument("--replace", action="append", metavar="OLD=NEW", help="token substitution")
    s.add_argument(
        "--direction",
        choices=("auto", "inbound", "outbound", "network", "any"),
        default="auto",
        help="which copy of an exchange to send (default auto: the server's copy when both "
        "sides were captured, only the requests to --target when it was recorded)",
    )
    c = p.add_argument_group("compare")
    c.add_argument("--ignore-header", action="append", metavar="NAME")
    c.add_argument("--ignore-json-path", action="append", metavar="PATH", help="$.a.b, $..id")
    c.add_argument("--no-header-compare", action="store_true")
    c.add_argument(
        "--proto-descriptors",
        metavar="FILE",
        help="a FileDescriptorSet (protoc --include_imports --descriptor_set_out): gRPC "
        "messages compared field by field as JSON (with --ignore-json-path)",
    )
    c.add_argument("--summary-only", action="store_true", help="keep no bodies (compare hashes)")
    c.add_argument("--max-diffs", type=int, default=50, help="mismatches kept in the report")
    k = p.add_argument_group("conntrack")
    k.add_argument("--netns", metavar="NAME", help="replay from (and watch) this network namespace")
    k.add_argument(
        "--conntrack-threshold",
        type=float,
        default=0.8,
        metavar="F",
        help="slow new connections above this fill (default 0.8)",
    )
    k.add_argument("--no-conntrack-throttle", action="store_true")


def plan_from_args(args: argparse.Namespace) -> Any:
    from replay.plan import Plan, parse_rate, parse_speed
    from replay.rewrite import Rules

    timing = args.timing or "asap"
    if args.speed is not None:
        if args.rate:
            raise ConfigError(
                f"--speed {args.speed} scales the recorded gaps and --rate {args.rate} replaces "
                "them; give one of the two"
            )
        if args.timing == "asap":
            raise ConfigError(
                f"--speed {args.speed} scales the recorded gaps, --timing asap ignores them; "
                "drop --timing asap (--speed implies --timing original)"
            )
        timing = "original"
    return Plan(
        capture=args.capture,
        target=args.target,
        timing=timing,
        speed=parse_speed(args.speed or "1x"),
        direction=getattr(args, "direction", "auto"),
        rate=parse_rate(args.rate) if args.rate else None,
        vusers=args.vusers,
        duration=args.duration,
        loops=args.loop,
        connection=args.connection,
        processes=args.processes,
        timeout=args.timeout,
        summary_only=args.summary_only,
        rules=Rules.parse(args.host_map, args.set_header, args.remove_header, args.replace),
        ignore_headers=args.ignore_header or [],
        ignore_json_paths=args.ignore_json_path or [],
        compare_headers=not args.no_header_compare,
        netns=args.netns,
        conntrack_threshold=args.conntrack_threshold,
        conntrack_throttle=not args.no_conntrack_throttle,
        max_diffs=args.max_diffs,
        target_ca=getattr(args, "target_ca", None),
        proto_descriptors=_descriptors(getattr(args, "proto_descriptors", None)),
    )


def _descriptors(path: str | None) -> str | None:
    """The --proto-descriptors file, checked here (one clear error before any replay)."""
    if path:
        from nodetap.grpc_json import Renderer

        Renderer(path)
    return path
