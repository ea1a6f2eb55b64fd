"""`nodetap snapshot`: freeze a selection of stored RRPairs; list, export and delete them."""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

import grpc

from cli import progress
from cli.commands.export import (
    BY_SUFFIX,
    add_output_arguments,
    add_selection_arguments,
    open_output,
    pcap_writer,
    remote_pairs,
    selection_items,
)
from cli.json_out import message_dict, message_json
from cli.options.forwarder_client import add_client_arguments, client_from_args
from cli.options.output import add_format_argument, dump_structured, resolve_format
from forwarder.export import write
from forwarder.filters import parse_filters
from nodetap.errors import NodetapError
from nodetap.v1 import forwarder_pb2 as fpb

EPILOG = """\
examples:
  nodetap snapshot create --forwarder 127.0.0.1:7070 --since 1h -n shop -l app=cart \\
      --name before-release
  nodetap snapshot list --forwarder 127.0.0.1:7070            # -o json|yaml|name
  nodetap snapshot export snap-0123456789ab --forwarder 127.0.0.1:7070 -w s.har
  nodetap snapshot export before-release --forwarder 127.0.0.1:7070 -o jsonl  # by name
  nodetap snapshot delete snap-0123456789ab --forwarder 127.0.0.1:7070

A snapshot keeps its RRPairs from retention until it is deleted; replay one with
`nodetap replay --snapshot ID --forwarder ADDR`.
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "snapshot",
        help="freeze, list, export and delete snapshots in a forwarder",
        description="Snapshots freeze a selection of stored RRPairs under an id that retention "
        "does not remove until the snapshot is deleted.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="snapshot_cmd", metavar="ACTION", required=True)
    c = sub.add_parser("create", help="freeze the RRPairs matching a selection")
    add_client_arguments(c)
    c.add_argument("--name", required=True, help="a name for the snapshot")
    add_selection_arguments(c)
    c.set_defaults(func=run_create)
    ls = sub.add_parser("list", help="list snapshots, newest first")
    add_client_arguments(ls)
    add_format_argument(
        ls,
        ("table", "json", "yaml", "name"),
        "table",
        help="table; json: one JSON object per snapshot; yaml: a list; name: the ids",
    )
    ls.add_argument(
        "--json", dest="format", action="store_const", const="json", help="same as -o json"
    )
    ls.set_defaults(func=run_list)
    e = sub.add_parser("export", help="write a snapshot's RRPairs")
    e.add_argument("id", metavar="SNAPSHOT", help="snapshot id or name")
    add_client_arguments(e)
    add_output_arguments(e)
    e.set_defaults(func=run_export)
    d = sub.add_parser("delete", help="delete a snapshot (its RRPairs fall under retention)")
    d.add_argument("id", metavar="SNAPSHOT", help="snapshot id or name")
    add_client_arguments(d)
    d.set_defaults(func=run_delete)


def _call(args: argparse.Namespace, method: str, request: Any) -> Any:
    with client_from_args(args) as c:
        try:
            return getattr(c.stub, method)(request, metadata=c.metadata, timeout=60)
        except grpc.RpcError as e:
            raise c.error(e) from None


_ID = re.compile(r"^snap-[0-9a-f]{12}$")


def resolve(args: argparse.Namespace, ref: str) -> str:
    """A snapshot's id from its id or its name (a name given to several: an error)."""
    if _ID.match(ref):
        return ref
    resp = _call(args, "ListSnapshots", fpb.ListSnapshotsRequest())
    named = [s for s in resp.snapshots if s.name == ref]
    if len(named) == 1:
        return str(named[0].id)
    if not named:
        raise NodetapError(
            f"no snapshot with the id or name {ref!r} in {args.forwarder}; "
            "see nodetap snapshot list"
        )
    raise NodetapError(
        f"{len(named)} snapshots are named {ref!r}: "
        + ", ".join(_line(s).split("  ")[0] for s in named)
        + "; give the id"
    )


def _line(s: fpb.Snapshot) -> str:
    created = s.created.ToDatetime().strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{s.id}  {created}  {s.count:>8} RRPairs  {s.name}"


def run_create(args: argparse.Namespace) -> int:
    flt = parse_filters(selection_items(args), args.since, args.until)
    snap = _call(args, "CreateSnapshot", fpb.CreateSnapshotRequest(name=args.name, filter=flt))
    print(snap.id)
    print(f"nodetap: snapshot {snap.id} holds {snap.count} RRPairs", file=sys.stderr)
    return 0


def run_list(args: argparse.Namespace) -> int:
    resp = _call(args, "ListSnapshots", fpb.ListSnapshotsRequest())
    if args.format == "yaml":
        sys.stdout.write(dump_structured([message_dict(s) for s in resp.snapshots], "yaml"))
        return 0
    for s in resp.snapshots:
        if args.format == "json":
            print(message_json(s))
        elif args.format == "name":
            print(s.id)
        else:
            print(_line(s))
    return 0


def run_export(args: argparse.Namespace) -> int:
    resolve_format(args, BY_SUFFIX)
    req = fpb.ExportRequest(snapshot_id=resolve(args, args.id), limit=args.limit)
    pairs = remote_pairs(args, req)
    if args.write != "-":  # a bar on a terminal, never over the data
        pairs = progress.counting(pairs, args.limit or None, f"export to {args.write}")
    with open_output(args.write) as fp:
        n = write(pairs, fp, args.format, pcap_writer=pcap_writer())
    if args.write != "-":
        print(f"nodetap: wrote {n} RRPairs to {args.write}", file=sys.stderr)
    return 0


def run_delete(args: argparse.Namespace) -> int:
    sid = resolve(args, args.id)
    resp = _call(args, "DeleteSnapshot", fpb.DeleteSnapshotRequest(id=sid))
    if not resp.deleted:
        raise NodetapError(f"no snapshot {sid} in {args.forwarder}; see nodetap snapshot list")
    print(f"nodetap: deleted {sid}", file=sys.stderr)
    return 0
