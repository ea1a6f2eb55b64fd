"""`nodetap capture`: live capture of HTTP/1.x exchanges as RRPairs."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any

from agent.pipeline import Pipeline, close_sink, jsonl_writer, run_packet, run_syscall
from agent.procfs import cgroup2_ids
from cli.capture_summary import format_summary
from cli.options import selection
from cli.options.capture import REGISTER_READS, add_capture_arguments
from cli.table import TableWriter
from nodetap import jsonl, rrpair_json
from nodetap.errors import ConfigError
from nodetap.signals import stop_on_signals
from nodetap.v1 import rrpair_pb2 as pb

if TYPE_CHECKING:
    from agent.rules import RuleEngine

EPILOG = """\
examples:
  nodetap capture --port 8080                   # HTTP on port 8080, JSONL to stdout
  nodetap capture -p 4242 -o table              # one process, a line per exchange
  nodetap capture --port 80 --duration 30s -w web.jsonl
  nodetap capture --port 80 -c 100 --forwarder 127.0.0.1:7070
  nodetap capture --mode packet -i veth0 --port 80
  nodetap capture --ebpf                        # print the BPF program and exit
  nodetap capture --port 443 --no-tls           # leave TLS libraries alone (no uprobes)

-o names the format (jsonl, json = jsonl, table, wide), as kubectl -o; -w FILE the file
written, as tcpdump -w.

The summary (events, bytes, RRPairs, drops by cause) goes to stderr on exit. Records are
decoded at once, in memory, by the Rust core: no captured byte is kept on disk.
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "capture",
        help="capture HTTP exchanges of local processes (or packets) as RRPairs",
        description="Capture the HTTP/1.x traffic of processes on this host with BPF "
        "syscall tracepoints and write it as request/response pairs (RRPairs).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_capture_arguments(p)
    p.add_argument(
        "--proto-descriptors",
        metavar="FILE",
        help="a FileDescriptorSet (protoc --include_imports --descriptor_set_out): gRPC "
        "messages also as JSON in the JSONL output (grpc.requestJson/responseJson)",
    )
    from cli.options.metrics import add_arguments as add_metrics_arguments
    from cli.options.rules import add_arguments as add_rules_arguments
    from cli.options.sink import add_arguments as add_sink_arguments
    from cli.options.targeting import add_arguments as add_k8s_arguments

    add_sink_arguments(p)
    add_rules_arguments(p)
    add_metrics_arguments(p)
    add_k8s_arguments(p)
    p.set_defaults(func=run)


WIDE = 1 << 20  # a width every column fits in


def build_writer(fmt: str, out: IO[str], render: Any = None) -> Callable[[pb.RRPair], None]:
    """The local writer of --format: a table line, or a JSONL line, per RRPair. render (a
    nodetap.grpc_json.Renderer): gRPC messages also as JSON."""
    if fmt in ("table", "wide"):
        table = TableWriter(out, width=WIDE if fmt == "wide" else None)
        return table.write
    if render is None:
        return jsonl_writer(out)

    def write_rendered(pair: pb.RRPair) -> None:
        if pair.HasField("grpc"):
            out.write(json.dumps(render.annotate(rrpair_json.to_dict(pair))) + "\n")
            out.flush()
        else:
            jsonl.write(out, pair)
            out.flush()

    return write_rendered


def run(args: argparse.Namespace) -> int:
    if args.ebpf and args.mode == "packet":
        from agent.packet.live import filter_program

        print(filter_program(args.interface or "lo"))
        return 0
    if args.ebpf:
        from agent.loader import (
            LoadOptions,
            addr_tracepoint_usable,
            cflags,
            program_text,
            sys_exit_btf_id,
        )

        opts = LoadOptions(
            ringbuf_pages=args.ringbuf_pages,
            typed_regs=REGISTER_READS[args.register_reads],
            tls=not args.no_tls,
        )
        flags = cflags(opts, sys_exit_btf_id(opts) is not None, addr_tracepoint_usable())
        print("// cflags: " + " ".join(flags))
        print(program_text(opts.tls))
        return 0
    if args.count is not None and args.count <= 0:
        raise ConfigError("--count must be a positive number")
    if args.max_body < 0:
        raise ConfigError("--max-body must not be negative")
    if args.mode == "packet" and not args.interface:
        raise ConfigError("--mode packet needs --interface IF (for example --interface eth0)")
    if args.mode == "packet" and selection.given(args):
        raise ConfigError(
            "-n/-l select by the pod's namespace and labels, which a packet capture does not "
            "know; drop them or capture with --mode syscall"
        )
    if args.mode == "syscall":
        from agent import pid_tree
        from agent.loader import preflight

        pid_tree.check_exist(args.pid)  # -p 999999: say so rather than capture nothing

        preflight()  # not root, no BCC, no headers...: say so before anything else starts
    stop = threading.Event()
    stop_on_signals(stop)

    from agent.capture_config import default_decoder
    from cli.options.rules import from_args as rules_from_args
    from cli.options.sink import from_args as sink_from_args
    from cli.options.targeting import from_args as node_context_from_args

    engine = rules_from_args(args)
    # the core decoder runs the edge rules itself, before it encodes an RRPair
    # (agent/capture_rules.py); the pipeline keeps the -n/-l selection
    in_core = args.mode == "syscall" and default_decoder() == "core"
    rules = selection.selecting_rules(args, None if in_core else engine)
    node = node_context_from_args(args) if args.mode == "syscall" else None
    if node is not None and selection.given(args) and not node.enricher.in_cluster:
        print(
            "nodetap: warning: -n/-l: no Kubernetes here (not in a pod, no kubeconfig), so no "
            "RRPair has a namespace or labels and none will be selected; give --kubeconfig",
            file=sys.stderr,
        )
    render = None
    if getattr(args, "proto_descriptors", None):
        from nodetap.grpc_json import Renderer

        render = Renderer(args.proto_descriptors)
    sink = sink_from_args(args)
    metrics = None
    if getattr(args, "metrics_addr", None):
        from nodetap.metrics_http import serve

        if node is not None:
            metrics = serve(args.metrics_addr, ready=node.ready, status=node.status)
        else:
            metrics = serve(args.metrics_addr)
    try:
        with jsonl.open_output(args.write) as out:
            pipeline = Pipeline(
                build_writer(args.format, out, render),
                rules=rules,
                sink=sink,
                # the fast path writes JSONL without a message: not with rendered messages
                jsonl_out=out if args.format == "jsonl" and render is None else None,
            )
            if args.mode == "packet":
                summary = run_packet(
                    args.interface,
                    args.port,
                    args.max_body,
                    pipeline.on_exchange,
                    stop,
                    duration=args.duration,
                    count=args.count,
                    on_started=lambda: print(
                        f"nodetap: capturing packets on {args.interface} (Ctrl-C to stop)",
                        file=sys.stderr,
                    ),
                )
            else:
                assert node is not None
                summary = _run_syscall(args, pipeline, stop, node, engine if in_core else None)
                out.flush()
    finally:
        if node is not None:
            node.close()
        summary_sink = close_sink(sink)
        if metrics is not None:
            metrics.close()
    summary.update(summary_sink)
    not_selected = getattr(rules, "not_selected", 0)
    summary["written"] = pipeline.written
    # dropped by the rules in the core decoder (summary) or in the pipeline
    summary["rules_dropped"] = summary.get("rules_dropped", 0) + pipeline.rules_dropped
    if selection.given(args):
        summary["not_selected"] = not_selected
        summary["rules_dropped"] -= not_selected
    print(
        format_summary(
            summary,
            output=args.write,
            forwarder=getattr(args, "forwarder", None),
            spool_dir=getattr(args, "spool_dir", None),
        ),
        file=sys.stderr,
    )
    if args.pid and args.mode == "syscall" and not summary.get("conns_tracked"):
        print(
            f"nodetap: warning: -p {','.join(map(str, args.pid))}: no connection accepted nor "
            "opened by these processes or their children; is it the process that serves or "
            "calls? (ss -tnp shows who owns the sockets)",
            file=sys.stderr,
        )
    if args.summary_json:
        with open(args.summary_json, "w") as f:
            json.dump(summary, f, indent=1, sort_keys=True)
    return 0


def _run_syscall(
    args: argparse.Namespace,
    pipeline: Pipeline,
    stop: threading.Event,
    node: Any,
    rules: RuleEngine | None,
) -> dict[str, int]:
    from agent.capture_config import CaptureConfig

    cfg = CaptureConfig(
        pids=args.pid,
        ports=args.port,
        cgroup_ids=cgroup2_ids(args.cgroup),
        max_body=args.max_body,
        ringbuf_pages=args.ringbuf_pages,
        preexisting=not args.no_preexisting,
        typed_regs=REGISTER_READS[args.register_reads],
        tls=not args.no_tls,
    )
    from agent import backlog_ledger

    # what an earlier capture lost when it was killed: said and counted
    lost = backlog_ledger.recover()
    if lost.captures:
        print(lost.line(), file=sys.stderr)
    started: list[Any] = []
    ledgers: list[backlog_ledger.Ledger] = []

    def announce(cap: Any) -> None:
        started.append(cap)
        # the records waiting in the ring buffer: what a kill would lose
        ledgers.append(backlog_ledger.Ledger(None, cap.ring_backlog))
        print(
            f"nodetap: capturing {len(cap.syscalls)} syscalls"
            + (f", ports {','.join(map(str, args.port))}" if args.port else "")
            + (f", pids {','.join(map(str, args.pid))}" if args.pid else "")
            + " (Ctrl-C to stop)",
            file=sys.stderr,
        )

    on_exchange, count = pipeline.on_exchange, args.count
    if count and selection.given(args):  # -c counts the selected RRPairs, as tcpdump -c

        def on_exchange(c: Any) -> None:
            if pipeline.written < args.count:
                pipeline.on_exchange(c)
            if pipeline.written >= args.count:
                stop.set()

        count = None
    summary = run_syscall(
        cfg,
        on_exchange,
        stop,
        node,
        duration=args.duration,
        count=count,
        on_started=announce,
        rules=rules,
    )
    for ledger in ledgers:  # a clean stop (an exception leaves it: the next start counts)
        ledger.close()
    tls = started[0].tls if started else None
    if tls is not None:  # the TLS coverage, per process (agent/tls/coverage.py)
        from agent.tls.coverage import describe

        for row in tls.table():
            print("nodetap: TLS " + describe(row), file=sys.stderr)
    return summary
