"""`nodetap export`: RRPairs from a forwarder (or a JSONL file) as JSONL, HAR or pcap."""

from __future__ import annotations

import argparse
import contextlib
import struct
import sys
from collections.abc import Iterator
from typing import IO, Any

import grpc

from cli import progress
from cli.options import selection
from cli.options.forwarder_client import add_client_arguments, client_from_args
from cli.options.output import (
    RRPAIR_ALIASES,
    add_format_argument,
    add_write_argument,
    resolve_format,
)
from forwarder.client import export_from
from forwarder.export import FORMATS, PcapWriter, write
from forwarder.filters import FILTER_HELP, matches, parse_filters
from nodetap import jsonl
from nodetap.errors import ConfigError, InputError, PeerError, StorageError
from nodetap.jsonl import private_opener
from nodetap.v1 import forwarder_pb2 as fpb
from nodetap.v1 import rrpair_pb2 as pb

EPILOG = """\
examples:
  nodetap export --forwarder 127.0.0.1:7070 --since 10m                 # JSONL on stdout
  nodetap export --forwarder 127.0.0.1:7070 --follow --filter status=5xx  # live tail
  nodetap export --forwarder 127.0.0.1:7070 -o har -w capture.har \\
      --since 2026-11-23T04:00:00Z --until 2026-11-23T05:00:00Z --filter status=5xx
  nodetap export --forwarder HOST:7070 --token-file token --tls-ca ca.crt -n shop -l app=cart
  nodetap export -r capture.jsonl -w capture.har        # offline conversion (format from .har)
  nodetap export --forwarder 127.0.0.1:7070 --snapshot before-release -w s.pcap

-o names the format (jsonl, json = jsonl, har, pcap; as kubectl -o), -w the file (as
tcpdump -w); without -o, the file's suffix (.jsonl, .har, .pcap) chooses the format.
"""


def add_selection_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--since", metavar="TIME", help="from this time: RFC 3339, Unix seconds, 10m ago"
    )
    p.add_argument("--until", metavar="TIME", help="before this time (same forms as --since)")
    p.add_argument("--filter", metavar="KEY=VALUE", action="append", default=[], help=FILTER_HELP)
    selection.add_arguments(p)


def selection_items(args: argparse.Namespace) -> list[str]:
    """--filter items plus -n NAMESPACE (as namespace=A,B: any of them) and -l SELECTOR."""
    return selection.items(args)


# A -w file's suffix names the format when -o does not.
BY_SUFFIX = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".har": "har"}
BY_SUFFIX |= {".pcap": "pcap", ".cap": "pcap"}


def add_output_arguments(p: argparse.ArgumentParser) -> None:
    add_format_argument(
        p,
        FORMATS,
        "jsonl",
        aliases=RRPAIR_ALIASES,
        files=True,
        format_flag=True,
        help="RRPair format: jsonl (json), har (HAR 1.2) or pcap; default: from -w FILE's "
        "suffix, else jsonl",
    )
    add_write_argument(p, "RRPairs")
    p.add_argument(
        "--proto-descriptors",
        metavar="FILE",
        help="a FileDescriptorSet (protoc --include_imports --descriptor_set_out): gRPC "
        "messages also as JSON (grpc.requestJson/responseJson; HAR: _nodetap.grpc)",
    )
    p.add_argument("-c", "--limit", metavar="N", type=int, default=0, help="at most N RRPairs")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "export",
        help="write stored RRPairs as JSONL, HAR 1.2 or pcap",
        description="Export RRPairs from a forwarder (a time range and filters, or a snapshot) "
        "or convert a JSONL capture (--input) to another format.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_client_arguments(p, required=False)
    p.add_argument(
        "-r",
        "--input",
        metavar="FILE.jsonl",
        help="read a JSONL capture instead ('-': stdin; as tcpdump -r)",
    )
    p.add_argument(
        "--snapshot", metavar="SNAPSHOT", help="export this snapshot, by id or name (forwarder)"
    )
    p.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help="live tail (gRPC Subscribe): RRPairs as they are stored, until Ctrl-C or --limit",
    )
    add_selection_arguments(p)
    add_output_arguments(p)
    p.set_defaults(func=run)


def pcap_writer() -> PcapWriter | None:
    """The capture agent's pcap writer, when this build has it (pcap export needs it)."""
    try:
        from agent.packet.pcap_export import write_pcap
    except ModuleNotFoundError:
        return None
    return write_pcap


@contextlib.contextmanager
def open_output(path: str) -> Iterator[IO[bytes]]:
    if path == "-":
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    try:
        fp = open(path, "wb", opener=private_opener)  # noqa: SIM115 (closed below)
    except OSError as e:
        raise StorageError(f"cannot write {path}: {e.strerror}; pick another -w") from None
    with fp:
        yield fp


def say_retry(e: PeerError, pause: float) -> None:
    """One stderr line for an Export asked again (its store was unavailable)."""
    print(f"nodetap: {e}; asking again in {pause:g}s", file=sys.stderr, flush=True)


def remote_pairs(args: argparse.Namespace, request: fpb.ExportRequest) -> Iterator[pb.RRPair]:
    with client_from_args(args) as c:
        yield from export_from(c, request, on_retry=say_retry)


def follow_pairs(args: argparse.Namespace, flt: fpb.Filter) -> Iterator[pb.RRPair]:
    c = client_from_args(args)
    call = c.stub.Subscribe(fpb.SubscribeRequest(filter=flt), metadata=c.metadata)
    n = 0
    try:
        call.initial_metadata()  # the tail is live from here on
        print(f"nodetap: following live RRPairs from {args.forwarder}", file=sys.stderr, flush=True)
        for pair in call:
            yield pair
            n += 1
            if args.limit and n >= args.limit:
                return
    except grpc.RpcError as e:
        raise c.error(e) from None
    finally:
        call.cancel()
        c.close()


def _local_pairs(path: str, flt: fpb.Filter, limit: int) -> Iterator[pb.RRPair]:
    n = 0
    try:
        for pair in jsonl.read_path(path):
            if matches(flt, pair):
                yield pair
                n += 1
                if limit and n >= limit:
                    return
    except FileNotFoundError:
        raise InputError(f"capture file {path} not found; check --input") from None
    except jsonl.CaptureFormatError as e:
        raise InputError(f"{e}; is this a nodetap JSONL capture?") from None


def _write_or_say_which(pairs: Iterator[pb.RRPair], fp: IO[bytes], args: argparse.Namespace) -> int:
    """write(), with a pair the format cannot hold (a time past year 9999, an address that is
    not one) named in one line instead of a traceback."""
    last: list[pb.RRPair] = []

    def tracked() -> Iterator[pb.RRPair]:
        for pair in pairs:
            last[:] = [pair]
            yield pair

    try:
        return write(
            tracked(),
            fp,
            args.format,
            live=bool(args.follow),
            pcap_writer=pcap_writer(),
            render=_renderer(args),
        )
    except (ValueError, OverflowError, struct.error) as e:
        which = f"RRPair {last[0].id or '(no id)'}" if last else "an RRPair"
        raise InputError(
            f"{which} cannot be written as {args.format}: {e}; fix that pair, or export as jsonl"
        ) from None


def _renderer(args: argparse.Namespace) -> Any:
    path = getattr(args, "proto_descriptors", None)
    if not path:
        return None
    from nodetap.grpc_json import Renderer

    return Renderer(path)


def run(args: argparse.Namespace) -> int:
    resolve_format(args, BY_SUFFIX)
    _renderer(args)  # a bad --proto-descriptors file: one line before any output
    flt = parse_filters(selection_items(args), args.since, args.until)
    if bool(args.input) == bool(args.forwarder):
        raise ConfigError("give either --forwarder ADDR or --input FILE.jsonl")
    if args.input:
        if args.snapshot:
            raise ConfigError("--snapshot needs --forwarder (snapshots live in a forwarder)")
        pairs = _local_pairs(args.input, flt, args.limit)
    elif args.follow:
        if args.snapshot or args.since or args.until:
            raise ConfigError("--follow tails live RRPairs; drop --snapshot, --since and --until")
        if args.format != "jsonl":
            raise ConfigError("--follow writes JSONL (one RRPair per line as it arrives)")
        pairs = follow_pairs(args, flt)
    else:
        snapshot_id = snapshot_ref(args, args.snapshot) if args.snapshot else ""
        req = fpb.ExportRequest(filter=flt, snapshot_id=snapshot_id, limit=args.limit)
        pairs = remote_pairs(args, req)
    if args.write != "-" and not args.follow:  # a bar on a terminal, never over the data
        pairs = progress.counting(pairs, args.limit or None, f"export to {args.write}")
    with open_output(args.write) as fp:
        n = _write_or_say_which(pairs, fp, args)
    if args.write != "-":
        print(f"nodetap: wrote {n} RRPairs to {args.write}", file=sys.stderr)
    return 0


def snapshot_ref(args: argparse.Namespace, ref: str) -> str:
    """A snapshot's id from its id or name (cli/commands/snapshot.py)."""
    from cli.commands.snapshot import resolve

    return resolve(args, ref)
