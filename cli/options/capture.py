"""The flags of `nodetap capture` itself (what to capture, how much, where to write): the
flag groups it shares with other commands are the other modules of cli/options/."""

from __future__ import annotations

import argparse

from cli.options import units
from cli.options.output import RRPAIR_ALIASES, add_format_argument, add_write_argument


def int_list(text: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, not {text!r}"
        ) from None
    return values


def port_list(text: str) -> list[int]:
    ports = int_list(text)
    for p in ports:
        if not 0 < p < 65536:
            raise argparse.ArgumentTypeError(f"port {p} is out of range 1-65535")
    return ports


# --register-reads -> LoadOptions.typed_regs
REGISTER_READS: dict[str, bool | None] = {"auto": None, "typed": True, "probe": False}


def add_capture_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of `nodetap capture` (the demo reuses the parsing of these)."""
    p.add_argument(
        "--port",
        type=port_list,
        action="extend",
        default=[],
        metavar="PORT[,PORT]",
        help="only connections with this local or remote port (repeatable)",
    )
    p.add_argument(
        "-p",
        "--pid",
        type=int_list,
        action="extend",
        default=[],
        metavar="PID[,PID]",
        help="only these processes (repeatable)",
    )
    p.add_argument(
        "--cgroup",
        action="append",
        default=[],
        metavar="PATH",
        help="only processes in this cgroup v2 directory (repeatable)",
    )
    p.add_argument(
        "--duration",
        type=units.positive_duration,
        metavar="TIME",
        help="stop after this long (10s, 5m, 1h)",
    )
    p.add_argument(
        "-c", "--count", type=int, metavar="N", help="stop after N RRPairs (as tcpdump -c)"
    )
    add_write_argument(p, "RRPairs")
    add_format_argument(
        p,
        ("jsonl", "table", "wide"),
        "jsonl",
        aliases=RRPAIR_ALIASES,
        files=True,
        format_flag=True,
        help="jsonl (json): one RRPair per line (proto3 JSON); table: a line per exchange, "
        "fitted to the terminal; wide: the table with every column",
    )
    p.add_argument(
        "--max-body",
        type=units.size,
        default=1 << 20,
        metavar="SIZE",
        help="bodies longer than this are cut (flag 'truncated'; default 1 MiB); the BPF "
        "programs copy at most this plus 64 KiB of one syscall",
    )
    p.add_argument(
        "--ringbuf-pages",
        type=int,
        default=4096,
        metavar="N",
        help="ring buffer size in pages, a power of two (default 4096 = 16 MiB)",
    )
    p.add_argument(
        "--register-reads",
        choices=tuple(REGISTER_READS),
        default="auto",
        help="how the BPF programs read a syscall's saved registers: typed (plain loads the "
        "kernel checks against its BTF; x86-64 with kernel BTF), probe (bpf_probe_read, "
        "slower, works everywhere) or auto (typed where possible; the default)",
    )
    p.add_argument(
        "--no-preexisting",
        action="store_true",
        help="ignore connections opened before the capture started",
    )
    p.add_argument(
        "--mode",
        choices=("syscall", "packet"),
        default="syscall",
        help="syscall: trace processes (default); packet: packets on --interface",
    )
    p.add_argument(
        "-i", "--interface", metavar="IF", help="interface for --mode packet (as tcpdump -i)"
    )
    p.add_argument(
        "--summary-json", metavar="FILE", help="also write the exit summary as JSON to FILE"
    )
    p.add_argument(
        "--no-tls",
        action="store_true",
        help="do not capture TLS plaintext (by default uprobes on SSL_read/SSL_write go into "
        "the TLS libraries of the targeted processes, and only those)",
    )
    p.add_argument("--ebpf", action="store_true", help="print the BPF program and exit")
