"""`nodetap replay`: replay a JSONL capture against a target, compare, report."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from typing import Any

from cli.options import selection
from cli.options.output import add_format_argument, dump_structured
from cli.options.replay_plan import add_plan_args, plan_from_args
from cli.options.tokens import read_token
from nodetap.errors import ConfigError, InputError

EPILOG = """\
examples:
  nodetap replay cap.jsonl --target http://127.0.0.1:8080
  nodetap replay cap.jsonl --target http://svc:80 --timing original --speed 2x
  nodetap replay cap.jsonl --target http://10.0.0.5:8080 --rate 500/s --duration 1m --loop
  nodetap replay -r cap.jsonl --target http://127.0.0.1:8080 -n shop -l app=cart -o json
  nodetap replay --snapshot before-release --forwarder 127.0.0.1:7070 --target http://svc:80
  nodetap replay --forwarder 127.0.0.1:7070 --since 15m --target http://svc:80
  nodetap replay cap.jsonl --target http://127.0.0.1:8080 --connection close --report r.json
  nodetap replay cap.jsonl --target http://10.1.2.3:80 --netns client --flush-stale
  nodetap replay cap.jsonl --target http://127.0.0.1:8080 --notrack
  nodetap replay cap.jsonl --target http://10.1.2.3:80 --agents 10.0.0.7:7070,10.0.0.8:7070 \\
      --token-file token --tls-ca ca.pem
  nodetap replay cap.jsonl --target http://127.0.0.1:8080 \\
      --replace 'Bearer old=Bearer new' --set-header 'X-Env: staging' --ignore-json-path '$..id'

The report (stdout table; JSON with --report) gives planned versus achieved rate, latency
percentiles, errors by kind (those seen while conntrack dropped packets are counted apart),
response mismatches with their diffs, conntrack fill and throttling, the agent's CPU throttling
(latency is marked unreliable while it lasted) and peak memory.
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "replay",
        help="replay a JSONL capture against a target and compare the responses",
        description="Replay recorded RRPairs against a target; compare and report.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_plan_args(p)
    o = p.add_argument_group("output")
    o.add_argument("--report", metavar="FILE", help="write the JSON report to FILE")
    add_format_argument(o, ("table", "json", "yaml"), "table", help="the report on stdout")
    o.add_argument(
        "--json", dest="format", action="store_const", const="json", help="same as -o json"
    )
    o.add_argument(
        "--html",
        metavar="FILE",
        help="write a self-contained HTML report (charts, mismatches with diffs, mocks)",
    )
    o.add_argument("--no-progress", action="store_true", help="no live progress display")
    o.add_argument(
        "--fail-on",
        metavar="LIST",
        help="exit 3 when any holds: errors, mismatches, unmatched-mocks (each optionally >N), "
        "p99>MS, rate<RATIO; for example errors,mismatches,p99>250,rate<0.95",
    )
    n = p.add_argument_group("network")
    n.add_argument(
        "--flush-stale",
        action="store_true",
        help="delete conntrack entries left towards the target by an earlier run first",
    )
    n.add_argument(
        "--notrack",
        action="store_true",
        help="put the replay's own traffic on the raw table's NOTRACK path (no conntrack entries)",
    )
    m = p.add_argument_group("mocks")
    m.add_argument(
        "--mocks",
        action="store_true",
        help="answer the service's calls to its dependencies with its recorded outbound "
        "exchanges (needs --sut-pid)",
    )
    m.add_argument(
        "--sut-pid",
        type=int,
        metavar="PID",
        help="the service under test's process: its cgroup's CPU and memory in the report",
    )
    f = p.add_argument_group("from a forwarder")
    f.add_argument(
        "--snapshot", metavar="SNAPSHOT", help="replay this snapshot, by id or name (--forwarder)"
    )
    f.add_argument(
        "--forwarder", metavar="ADDR", help="the forwarder holding --snapshot or --since's RRPairs"
    )
    f.add_argument(
        "--since",
        metavar="TIME",
        help="replay the RRPairs stored from this time (--forwarder): RFC 3339, Unix seconds, 10m",
    )
    f.add_argument("--until", metavar="TIME", help="and before this time (same forms as --since)")
    f.add_argument("--forwarder-token-file", metavar="FILE", help="the forwarder's bearer token")
    f.add_argument("--forwarder-tls-ca", metavar="PEM", help="CA certificate of the forwarder")
    d = p.add_argument_group("distributed")
    d.add_argument("--agents", metavar="A,B,...", help="split the plan across replay agents")
    d.add_argument("--token-file", metavar="FILE", help="bearer token for the agents")
    d.add_argument("--tls-ca", metavar="PEM", help="CA certificate to verify the agents with")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.read:
        if args.capture:
            raise ConfigError("give the capture once: as CAPTURE or as -r FILE")
        args.capture = args.read
    if args.until and not args.since:
        raise ConfigError("--until needs --since (the start of the stored RRPairs to replay)")
    if args.snapshot or args.forwarder or args.since:
        if not args.forwarder:
            raise ConfigError(
                "--snapshot ID and --since TIME read a forwarder: add --forwarder ADDR"
            )
        if not (args.snapshot or args.since):
            raise ConfigError(
                "--forwarder ADDR needs what to replay: --snapshot ID or --since TIME"
            )
        if args.capture:
            raise ConfigError("give a capture file or --snapshot/--since, not both")
        with tempfile.TemporaryDirectory(prefix="nodetap-stored-") as tmp:
            args.capture = _download(args, tmp)
            return _run(args)
    if not args.capture:
        raise ConfigError(
            "give a capture file (RRPair JSONL), or --forwarder ADDR with --snapshot ID or "
            "--since TIME"
        )
    _check_readable(args.capture)
    if _selection(args) is not None:
        with tempfile.TemporaryDirectory(prefix="nodetap-selected-") as tmp:
            args.capture = _select_local(args, tmp)
            return _run(args)
    return _run(args)


def _check_readable(path: str) -> None:
    """A capture file that cannot be opened is one clear line, before any work."""
    if path == "-":
        return
    try:
        open(path, "rb").close()
    except FileNotFoundError:
        raise InputError(f"capture file {path} not found") from None
    except OSError as e:
        raise InputError(
            f"cannot read capture file {path}: {e.strerror or e}; check its owner and mode"
        ) from None


def _selection(args: argparse.Namespace) -> Any:
    """The Filter of -n, -l and --filter (None when none is given)."""
    from forwarder.filters import parse_filters

    items = selection.items(args)
    return parse_filters(items) if items else None


def _select_local(args: argparse.Namespace, folder: str) -> str:
    """The capture's RRPairs that -n/-l/--filter select, as a JSONL file (streamed)."""
    from forwarder.filters import matches
    from nodetap import jsonl

    flt = _selection(args)
    path = os.path.join(folder, "selected.jsonl")
    n = 0
    try:
        with open(path, "w", encoding="utf-8") as out:
            for pair in jsonl.read_path(args.capture):
                if matches(flt, pair):
                    jsonl.write(out, pair)
                    n += 1
    except FileNotFoundError:
        raise InputError(f"capture file {args.capture} not found") from None
    except jsonl.CaptureFormatError as e:
        raise InputError(f"{e}; is this a nodetap JSONL capture?") from None
    if n == 0:
        raise InputError(f"no RRPair of {args.capture} matches -n/-l/--filter; nothing to replay")
    print(f"nodetap: replaying the {n} selected RRPairs of {args.capture}", file=sys.stderr)
    return path


def _snapshot_id(args: argparse.Namespace, client: Any) -> str:
    """The id of the one snapshot whose id or name is --snapshot."""
    import grpc

    from nodetap.v1 import forwarder_pb2 as fpb

    try:
        snapshots = client.stub.ListSnapshots(
            fpb.ListSnapshotsRequest(), metadata=client.metadata, timeout=60
        ).snapshots
    except grpc.RpcError as e:
        raise client.error(e) from None
    ids = [s.id for s in snapshots if args.snapshot in (s.id, s.name)]
    if len(ids) != 1:
        raise InputError(
            f"{'no' if not ids else len(ids)} snapshots with the id or name {args.snapshot!r} "
            f"in {args.forwarder}; see nodetap snapshot list" + ("; give the id" if ids else "")
        )
    return str(ids[0])


def _download(args: argparse.Namespace, folder: str) -> str:
    """Write the snapshot's RRPairs, or those stored since --since (until --until), to a JSONL
    file (streamed: constant memory)."""
    from cli.commands.export import say_retry
    from forwarder.client import ForwarderClient, export_pairs
    from forwarder.filters import parse_filters
    from nodetap import jsonl
    from nodetap.transport import ClientTLS

    token = read_token(args.forwarder_token_file, "--forwarder-token-file")
    tls = ClientTLS(args.forwarder_tls_ca) if args.forwarder_tls_ca else None
    sid = ""
    if args.snapshot:
        with ForwarderClient(args.forwarder, token=token, tls=tls) as c:
            sid = _snapshot_id(args, c)
    what = f"snapshot {args.snapshot}" if sid else f"stored since {args.since}"
    path = os.path.join(folder, "stored.jsonl")
    n = 0
    with open(path, "w", encoding="utf-8") as out:
        for pair in export_pairs(
            args.forwarder,
            snapshot_id=sid,
            flt=parse_filters(selection.items(args), args.since, args.until),
            token=token,
            tls=tls,
            on_retry=say_retry,
        ):
            jsonl.write(out, pair)
            n += 1
    if n == 0:
        raise InputError(f"no such RRPairs {what} on {args.forwarder}; nothing to replay")
    print(f"{what}: {n} RRPairs from {args.forwarder}", file=sys.stderr)
    return path


def _run(args: argparse.Namespace) -> int:
    from replay.judge import EXIT_FAILED, judge, parse_fail_on, verdict_line
    from replay.report import table

    plan = plan_from_args(args)
    conditions = parse_fail_on(args.fail_on) if args.fail_on else []
    if any(c.name == "rate" for c in conditions) and not plan.rate and plan.timing != "original":
        raise ConfigError(
            "--fail-on rate<RATIO compares the achieved rate with the planned one; "
            "give --rate N/s or --timing original (an asap replay plans no rate)"
        )
    if args.agents:
        from replay.distributed import run_distributed

        if args.mocks:
            raise ConfigError("--mocks runs on the service's node: not with --agents yet")
        if args.notrack or args.flush_stale or args.netns:
            raise ConfigError(
                "--notrack, --flush-stale and --netns act on the replaying node: give them to "
                "each 'nodetap replay-agent' (--netns) or run them there; not with --agents"
            )

        from nodetap.transport import ClientTLS

        report = run_distributed(
            plan,
            [a.strip() for a in args.agents.split(",") if a.strip()],
            read_token(args.token_file),
            ClientTLS(args.tls_ca) if args.tls_ca else None,
        )
    else:
        report = _run_local(plan, args)
    result = report.pop("result", None) or {}
    if conditions:
        report["verdict"] = judge(conditions, report)
    if args.html:
        from replay.html_report import render

        with open(args.html, "w", encoding="utf-8") as f:
            f.write(render(report, result))
    if args.report:
        with open(args.report, "w") as f:
            json.dump(report, f, indent=2, default=str)
    if args.format in ("json", "yaml"):
        doc = json.loads(json.dumps(report, default=str))
        sys.stdout.write(dump_structured(doc, args.format))
    else:
        print(table(report))
    if conditions:
        print(verdict_line(report["verdict"]), file=sys.stderr)
        if not report["verdict"]["passed"]:
            return EXIT_FAILED
    return 0 if not report.get("failures") else 1


def _run_local(plan: Any, args: argparse.Namespace) -> dict[str, Any]:
    from replay.plan import is_ip
    from replay.runner import run_replay

    if args.flush_stale:
        from netsetup.conntrack import flush_stale

        if not is_ip(plan.host):
            raise ConfigError(f"--flush-stale needs an IP address target, not {plan.host!r}")
        gone = flush_stale(plan.host, plan.port, plan.netns)
        print(
            f"conntrack: flushed {len(gone)} stale entries towards {plan.authority}",
            file=sys.stderr,
        )
    rules = None
    if args.notrack:
        from netsetup.rules import notrack_for_target

        rules = notrack_for_target(plan.host, plan.port, plan.netns, owner="replay")
    mocks = usage = None
    try:
        if args.mocks:
            mocks = _start_mocks(plan, args)
        if args.sut_pid:
            usage = _start_usage(args.sut_pid)
        report: dict[str, Any] = run_replay(plan, progress=False if args.no_progress else None)
    finally:
        if usage is not None:
            sut = usage.stop()
        if mocks is not None:
            mocks.close()
        if rules is not None:
            rules.remove()
    if mocks is not None:
        report["mocks"] = mocks.report()
    if usage is not None:
        report["sut"] = sut
    if args.notrack:
        report["notrack"] = True
    return report


def _start_mocks(plan: Any, args: argparse.Namespace) -> Any:
    from replay.mocking import MockSession

    if not args.sut_pid:
        raise ConfigError(
            "--mocks needs --sut-pid PID: the service whose recorded calls become mocks and "
            "whose connections are redirected to them"
        )
    if args.capture == "-":
        raise ConfigError("--mocks reads the capture twice: give a file, not '-'")
    session = MockSession.start(
        args.capture, args.sut_pid, (plan.host, plan.port), args.ignore_json_path or []
    )
    for line in session.lines():
        print(line, file=sys.stderr)
    return session


def _start_usage(pid: int) -> Any:
    import os

    from replay.mocking import process_tree
    from replay.sut_usage import SutUsage

    if not os.path.exists(f"/proc/{pid}"):
        raise ConfigError(f"--sut-pid {pid}: no such process; give the service's pid")
    return SutUsage(pid, process_tree(pid)).start()
