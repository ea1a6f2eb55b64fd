"""`nodetap forwarder`: store RRPairs from agents, serve them to gRPC clients."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from typing import Any

from cli.options import units
from cli.options.tokens import read_token
from nodetap.errors import ConfigError
from nodetap.signals import stop_on_signals
from nodetap.transport import DEFAULT_MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)

EPILOG = """\
examples:
  nodetap forwarder --listen 127.0.0.1:7070 --data-dir /var/lib/nodetap
  nodetap forwarder --listen 0.0.0.0:7070 --data-dir DIR --token-file token \\
      --tls-cert server.crt --tls-key server.key            # TLS and a bearer token
  (off loopback both are required; --insecure allows without them, with a warning)
  nodetap forwarder --listen :7070 --data-dir DIR --tls-cert server.crt --tls-key server.key \\
      --tls-client-ca clients-ca.crt                          # also verify client certificates
  nodetap forwarder --listen :7070 --data-dir DIR --retention-age 7d --retention-size 20GiB
  nodetap forwarder --listen :7070 --store nats://nats-0:4222,nats-1:4222,nats-2:4222 \\
      --nats-creds nodetap.creds --retention-age 7d   # scale-out: replicas share JetStream (R3)

Agents send with `nodetap capture --forwarder ADDR`; read with `nodetap export --forwarder ADDR`,
`nodetap snapshot ... --forwarder ADDR`, or any gRPC client (reflection is on; the service is
nodetap.v1.Forwarder, see proto/nodetap/v1/forwarder.proto).
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "forwarder",
        help="store RRPairs from agents and serve them over gRPC",
        description="Receive RRPairs from agents (acknowledged, deduplicated), store them in an "
        "embedded SQLite store (default) or a NATS JetStream cluster shared by several "
        "forwarders, and serve live tails, queries and snapshots over gRPC.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--listen",
        metavar="ADDR",
        default="127.0.0.1:7070",
        help="gRPC address HOST:PORT (default 127.0.0.1:7070; port 0 = any)",
    )
    p.add_argument(
        "--data-dir",
        metavar="DIR",
        help="where the embedded SQLite store lives (the default store)",
    )
    p.add_argument(
        "--store",
        metavar="SPEC",
        help="sqlite:DIR (same as --data-dir DIR) or nats://HOST:PORT[,HOST:PORT...]: a NATS "
        "JetStream cluster shared by several forwarders (scale-out)",
    )
    p.add_argument("--nats-creds", metavar="FILE", help="NATS credentials file (.creds)")
    p.add_argument("--nats-tls-ca", metavar="FILE", help="CA of the NATS servers (PEM): TLS on")
    p.add_argument(
        "--replicas",
        metavar="N",
        type=int,
        help="JetStream stream replicas (default 3 when the cluster has >= 3 nodes, else 1)",
    )
    p.add_argument(
        "--nats-dup-window",
        metavar="TIME",
        type=units.positive_duration,
        help="how long JetStream remembers message ids, so how late a resent batch is still "
        "stored once (default 10m; at most the retention age; costs memory in NATS: about "
        "200 B per RRPair of the window)",
    )
    p.add_argument(
        "--token-file", metavar="FILE", help="require this bearer token from every client and agent"
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="allow listening off loopback without TLS or without a token (logged as a warning "
        "and shown by the metric nodetap_forwarder_insecure_listen); off by default",
    )
    p.add_argument("--tls-cert", metavar="FILE", help="server certificate (PEM): turns TLS on")
    p.add_argument("--tls-key", metavar="FILE", help="server private key (PEM)")
    p.add_argument(
        "--tls-client-ca",
        metavar="FILE",
        help="CA of client certificates: require and verify one from every client",
    )
    p.add_argument(
        "--retention-age",
        metavar="TIME",
        type=units.positive_duration,
        help="delete RRPairs older than this (7d, 12h)",
    )
    p.add_argument(
        "--retention-size",
        metavar="SIZE",
        type=units.positive_size,
        help="delete the oldest RRPairs beyond this much data (20GiB)",
    )
    p.add_argument(
        "--retention-interval",
        metavar="TIME",
        type=units.positive_duration,
        default=60.0,
        help="how often retention runs (default 1m)",
    )
    p.add_argument(
        "--max-message-bytes",
        metavar="SIZE",
        type=units.positive_size,
        default=DEFAULT_MAX_MESSAGE_BYTES,
        help=f"largest gRPC message accepted (default {DEFAULT_MAX_MESSAGE_BYTES})",
    )
    p.add_argument(
        "--sync",
        choices=("full", "normal"),
        default="full",
        help="full: fsync each batch before its ack (default); normal: survive a "
        "forwarder crash but not a machine crash, faster",
    )
    p.add_argument(
        "--max-streams",
        metavar="N",
        type=int,
        default=64,
        help="concurrent calls served: agents' streams plus clients (default 64)",
    )
    p.add_argument(
        "--max-readers",
        metavar="N",
        type=int,
        default=16,
        help="open Subscribe and Export calls at most (default 16), on top of --max-streams; "
        "beyond it a call gets RESOURCE_EXHAUSTED",
    )
    p.add_argument(
        "--subscriber-buffer",
        metavar="SIZE",
        type=units.positive_size,
        default=16 << 20,
        help="live RRPairs buffered per Subscribe call (default 16MiB); a subscriber that falls "
        "further behind is ended with RESOURCE_EXHAUSTED",
    )
    p.add_argument(
        "--metrics-addr",
        metavar="ADDR",
        help="serve /metrics, /healthz, /readyz on HOST:PORT (default: off)",
    )
    p.set_defaults(func=run)


def _always() -> bool:
    return True


def run(args: argparse.Namespace) -> int:
    from forwarder.server import serve
    from forwarder.storage import open_store_spec

    if bool(args.store) == bool(args.data_dir):
        raise ConfigError(
            "give one store: --data-dir DIR (SQLite) or --store sqlite:DIR|nats://..."
        )
    spec = args.store or f"sqlite:{args.data_dir}"
    is_nats = not spec.startswith("sqlite:")
    nats_only = (args.nats_creds, args.nats_tls_ca, args.replicas, args.nats_dup_window)
    if not is_nats and any(v is not None for v in nats_only):
        raise ConfigError(
            "--nats-creds, --nats-tls-ca, --nats-dup-window and --replicas need --store nats://..."
        )
    for flag, n in (("--max-streams", args.max_streams), ("--max-readers", args.max_readers)):
        if n < 1:
            raise ConfigError(f"bad {flag} {n}; give at least 1")
    if args.replicas is not None and not 1 <= args.replicas <= 5:
        raise ConfigError(f"bad --replicas {args.replicas}; JetStream allows 1 to 5")
    retention_age = args.retention_age  # seconds (cli/options/units.py), or None
    retention_bytes = args.retention_size  # bytes, or None
    store = open_store_spec(
        spec,
        sync=args.sync,
        replicas=args.replicas,
        nats_creds=args.nats_creds,
        nats_tls_ca=args.nats_tls_ca,
        retention_age=retention_age,
        retention_bytes=retention_bytes,
        dup_window=args.nats_dup_window,
    )
    handle = serve(
        args.listen,
        spec,
        token=read_token(args.token_file),
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tls_client_ca=args.tls_client_ca,
        max_message_bytes=args.max_message_bytes,
        retention_age=retention_age,
        retention_bytes=retention_bytes,
        retention_interval=args.retention_interval,
        sync=args.sync,
        max_streams=args.max_streams,
        max_readers=args.max_readers,
        subscriber_bytes=args.subscriber_buffer,
        store=store,
        insecure=args.insecure,
    )
    metrics = None
    if args.metrics_addr:
        from nodetap import metrics_http

        # /readyz follows the store: a forwarder whose NATS is gone leaves the Service.
        metrics = metrics_http.serve(args.metrics_addr, ready=getattr(store, "healthy", _always))
    print(f"nodetap forwarder: listening on {handle.address}", flush=True)
    done = threading.Event()
    stop_on_signals(done)
    try:
        while not done.wait(1.0):
            pass
    finally:
        handle.stop(2.0)
        if metrics is not None:
            metrics.close()
    _exit_despite_stuck_calls(handle.server)
    return 0


def _exit_despite_stuck_calls(server: Any) -> None:
    """The store is closed; a call thread that grpc could not wake (a client that sent an
    undeserializable message and keeps its stream open) must not keep the process alive:
    Python joins thread-pool workers at exit, so SIGTERM would seem ignored."""
    pool = getattr(getattr(server, "_state", None), "thread_pool", None)
    if pool is not None:
        pool.shutdown(wait=False)  # idle workers end now
    stuck: list[threading.Thread] = []
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        stuck = [
            t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon
        ]
        if not stuck:
            return
        time.sleep(0.1)
    log.warning("exiting with %d gRPC call thread(s) still blocked", len(stuck))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
