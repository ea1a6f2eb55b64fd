"""`nodetap import FILE`: RRPairs from a pcap or pcapng capture (module name: `import` is a
keyword)."""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import stat
import sys
import time
from collections.abc import Iterator
from typing import BinaryIO

from cli import progress
from cli.options import units
from cli.options.output import RRPAIR_ALIASES, add_format_argument, add_write_argument
from nodetap.errors import ConfigError, InputError
from nodetap.jsonl import open_output

EPILOG = """\
examples:
  nodetap import capture.pcap                      # RRPairs as JSONL on stdout
  nodetap import capture.pcapng -w pairs.jsonl     # to a file
  nodetap import -r capture.pcap -w pairs.jsonl    # as tcpdump -r / -w
  nodetap import any.pcap --port 80 --port 8080    # only flows on these ports
  tcpdump -i any -w - port 80 | nodetap import -   # from a pipe

The summary (packets, flows, RRPairs, gaps, malformed packets) goes to stderr. A truncated
or damaged file is read up to the damage. Exit codes: 0 normally; 1 when nothing could be
read (no records, or no supported link type); 2 when the file is not a capture at all.
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "import",
        help="read a pcap/pcapng capture, write RRPairs (JSONL)",
        description="Reassemble the TCP connections of a pcap or pcapng capture, decode "
        "HTTP/1.x, HTTP/2 and gRPC (h2c) in the core, and write RRPairs (direction NETWORK, "
        'meta.source "pcap") as JSONL.',
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("file", metavar="FILE", nargs="?", help="pcap or pcapng file ('-' for stdin)")
    p.add_argument("-r", "--read", metavar="FILE", help="the same as FILE (as tcpdump -r)")
    add_write_argument(p, "RRPairs (JSONL)")
    add_format_argument(
        p, ("jsonl",), "jsonl", aliases=RRPAIR_ALIASES, files=True, help="jsonl (json) only"
    )
    p.add_argument(
        "--port",
        metavar="PORT",
        action="append",
        default=[],
        help="keep only flows with this port on either side (repeatable, or comma-separated)",
    )
    p.add_argument(
        "--max-body",
        metavar="SIZE",
        type=units.size,
        default=1 << 20,
        help="keep at most this many bytes of each body (default 1 MiB; flag 'truncated')",
    )
    p.add_argument(
        "--max-flows",
        metavar="N",
        type=int,
        default=32768,
        help="connections tracked at once (default 32768, about 7 KiB each); past it the "
        "least recently active is closed",
    )
    p.add_argument("--node", default="", help="value of meta.node in the RRPairs")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary on stderr")
    p.set_defaults(func=run)


def parse_ports(values: list[str]) -> list[int]:
    ports: list[int] = []
    for v in values:
        for part in v.split(","):
            part = part.strip()
            if not part:
                continue
            if not part.isdigit() or not 0 < int(part) < 65536:
                raise ConfigError(
                    f"--port {part!r} is not a TCP port; give a number from 1 to 65535"
                )
            ports.append(int(part))
    return ports


@contextlib.contextmanager
def _fewer_gc_passes() -> Iterator[None]:
    """An import makes millions of short-lived objects while thousands of flows stay open;
    with the default thresholds the collector's passes cost more than the parsing."""
    old = gc.get_threshold()
    gc.set_threshold(10_000, 10, 10)
    try:
        yield
    finally:
        gc.set_threshold(*old)


@contextlib.contextmanager
def _open_in(path: str) -> Iterator[BinaryIO]:
    if path == "-":
        yield sys.stdin.buffer
        return
    try:
        fp = open(path, "rb")  # noqa: SIM115
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}; check the path") from None
    with fp:
        yield fp


def _size(fp: BinaryIO) -> int | None:
    """The file's size for the progress bar; None for a pipe."""
    try:
        st = os.fstat(fp.fileno())
    except (OSError, ValueError):
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None


def run(args: argparse.Namespace) -> int:
    from agent.packet.importer import import_pcap
    from agent.packet.pcapfile import PcapFormatError
    from agent.rrpairs import CapturedExchange

    if bool(args.file) == bool(args.read):
        raise ConfigError("give the pcap file once: as FILE or as -r FILE")
    args.file = args.file or args.read
    ports = parse_ports(args.port)
    if args.max_body < 0:
        raise ConfigError("--max-body must be 0 or more bytes")
    if args.max_flows < 1:
        raise ConfigError("--max-flows must be 1 or more")
    started = time.monotonic()
    with (
        _open_in(args.file) as raw,
        progress.reading(raw, _size(raw), f"import {args.file}") as fin,
        open_output(args.write) as fout,
        _fewer_gc_passes(),
    ):
        write = fout.write

        def on_exchange(captured: CapturedExchange) -> None:
            write(captured.json_line())  # the core's JSON line, no message built
            write("\n")

        try:
            result = import_pcap(
                fin,
                on_exchange=on_exchange,
                ports=ports,
                max_body=args.max_body,
                node=args.node,
                max_flows=args.max_flows,
                jsonl=True,
            )
        except PcapFormatError as e:
            raise InputError(f"{args.file}: {e}; give a pcap or pcapng file (tcpdump -w)") from None
    c = result.counters
    name = args.file if args.file != "-" else "<stdin>"
    if result.error:
        print(f"nodetap: {name}: {result.error}; kept what came before it", file=sys.stderr)
    if not args.quiet:
        elapsed = time.monotonic() - started
        print(
            f"nodetap import: {c['packets']} packets, {c['flows']} flows, {c['rrpairs']} RRPairs, "
            f"{c['gaps']} gaps ({c['gap_bytes']} bytes), {c['malformed']} malformed packets, "
            f"{c['not_tcp']} not TCP, {c['unsupported_link']} of unsupported link types, "
            f"{c['filtered']} filtered out ({result.format}, {elapsed:.2f}s)",
            file=sys.stderr,
        )
    if c["packets"] and c["unsupported_link"] == c["packets"]:
        print(
            f"nodetap: {name}: no packet has a supported link type (Ethernet, Linux cooked "
            "SLL/SLL2, loopback, raw IP); convert the capture or capture on another interface",
            file=sys.stderr,
        )
        return 1
    if c["packets"] == 0:
        if not result.error:
            print(
                f"nodetap: {name}: no packets in this {result.format} file; capture some "
                "traffic first (tcpdump -w FILE)",
                file=sys.stderr,
            )
        else:
            print(f"nodetap: {name}: no packets could be read", file=sys.stderr)
        return 1
    return 0
