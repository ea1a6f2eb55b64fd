"""`nodetap replay-agent`: serve the ReplayAgent gRPC service (distributed replay): the remote
replay service of replay/remote_service.py, which runs plans sent by `nodetap replay --agents`."""

from __future__ import annotations

import argparse
import os
import sys
import threading
from typing import Any

from cli.options import units
from cli.options.metrics import add_arguments as add_metrics_arguments
from cli.options.tokens import read_token
from nodetap.signals import stop_on_signals

EPILOG = """\
examples:
  nodetap replay-agent --listen 127.0.0.1:7070 --allow-target 127.0.0.0/8
  nodetap replay-agent --listen 0.0.0.0:7070 --allow-target 10.96.0.0/12,web.default.svc \\
      --token-file /etc/nodetap/token --tls-cert agent.pem --tls-key agent.key
  nodetap replay cap.jsonl --target http://10.96.0.10:80 --agents 10.0.0.7:7070,10.0.0.8:7070 \\
      --token-file token --tls-ca ca.pem

The agent is off unless started. It refuses a non-loopback --listen without TLS and a token,
calls without the token, plans whose target is outside --allow-target (hosts or CIDRs), plans
that name a network namespace (only --netns chooses it), and plans over the --max-* caps. It
chooses the run ids, so a caller can watch or stop only its own runs. Uploaded pairs wait in a
private folder (0700, --work-dir), emptied at start and removed at exit.
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "replay-agent",
        help="serve the ReplayAgent gRPC service for distributed replay",
        description="Run replay plans sent by `nodetap replay --agents` and stream their status.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--listen", required=True, metavar="HOST:PORT")
    p.add_argument(
        "--allow-target",
        action="append",
        required=True,
        metavar="HOSTS/CIDRS",
        help="targets this agent may replay to (repeat or comma-separate)",
    )
    p.add_argument("--token-file", metavar="FILE", help="bearer token every call must carry")
    p.add_argument("--tls-cert", metavar="PEM")
    p.add_argument("--tls-key", metavar="PEM")
    p.add_argument("--netns", metavar="NAME", help="replay from this network namespace")
    cpus = max(1, os.cpu_count() or 1)
    p.add_argument(
        "--max-processes",
        type=int,
        default=cpus,
        metavar="N",
        help=f"replay processes one run may use (default: the CPUs, {cpus})",
    )
    p.add_argument(
        "--max-vusers", type=int, default=1024, metavar="N", help="vusers per run (default 1024)"
    )
    p.add_argument(
        "--max-upload",
        type=units.positive_size,
        default=1 << 30,
        metavar="SIZE",
        help="bytes of pairs one run may upload (default 1GiB)",
    )
    p.add_argument("--max-runs", type=int, default=4, metavar="N", help="runs at once (default 4)")
    p.add_argument(
        "--work-dir",
        metavar="DIR",
        help="parent of the private folder where uploaded pairs wait for their run "
        "(default: the system's temporary folder)",
    )
    add_metrics_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nodetap.errors import ConfigError
    from replay.remote_policy import AllowList, Limits
    from replay.remote_service import serve

    for flag in ("max_processes", "max_vusers", "max_runs"):
        if getattr(args, flag) < 1:
            raise ConfigError(f"--{flag.replace('_', '-')} must be 1 or more")
    if args.netns:
        from netsetup.netns import require

        require(args.netns)  # a namespace `ip netns list` shows, never a path
    token = read_token(args.token_file)
    allow = AllowList(args.allow_target)
    limits = Limits(args.max_processes, args.max_vusers, args.max_upload, args.max_runs)
    # Before the port opens: a SIGTERM that comes as soon as it does still cleans up.
    done = threading.Event()
    stop_on_signals(done)
    server, svc, port = serve(
        args.listen, allow, token, args.tls_cert, args.tls_key, args.netns, limits, args.work_dir
    )
    print(f"replay-agent: listening on port {port}, targets allowed: {allow}", file=sys.stderr)
    metrics = None
    if args.metrics_addr:
        from nodetap.metrics_http import serve as serve_metrics

        metrics = serve_metrics(args.metrics_addr)  # /metrics, /healthz, /readyz
    done.wait()
    svc.stop_all()
    server.stop(grace=2).wait()
    if metrics is not None:
        metrics.close()
    return 0
