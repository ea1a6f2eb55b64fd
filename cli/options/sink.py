"""The capture agent's forwarder sink flags: --forwarder ADDR, --spool-dir, --spool-max-bytes,
--token-file, --tls-ca."""

from __future__ import annotations

import argparse
import os

from agent.sinks.forwarder import ForwarderSink
from cli.options import units
from cli.options.tokens import read_token
from nodetap.errors import ConfigError
from nodetap.transport import ClientTLS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--forwarder ADDR, --spool-dir, --token-file, --tls-ca (and --spool-max-bytes)."""
    g = parser.add_argument_group("forwarder sink")
    g.add_argument(
        "--forwarder", metavar="ADDR", help="stream RRPairs to this forwarder (HOST:PORT)"
    )
    g.add_argument(
        "--spool-dir",
        metavar="DIR",
        help="spool batches here while the forwarder is unreachable (bounded)",
    )
    g.add_argument(
        "--spool-max-bytes",
        metavar="SIZE",
        type=units.size,
        default=1024 * 1024 * 1024,
        help="bound of the spool on disk (default 1 GiB); beyond it RRPairs are "
        "dropped and counted",
    )
    g.add_argument("--token-file", metavar="FILE", help="file with the forwarder's bearer token")
    g.add_argument("--tls-ca", metavar="FILE", help="CA certificate: use TLS, verify the forwarder")


def from_args(args: argparse.Namespace) -> ForwarderSink | None:
    """A started ForwarderSink from the flags of add_arguments, or None without --forwarder."""
    addr = getattr(args, "forwarder", None)
    if not addr:
        return None
    token = read_token(getattr(args, "token_file", None))
    tls_ca = getattr(args, "tls_ca", None)
    if tls_ca and not os.path.exists(tls_ca):
        raise ConfigError(f"TLS CA file {tls_ca} not found; give the forwarder's CA certificate")
    return ForwarderSink(
        addr,
        spool_dir=getattr(args, "spool_dir", None),
        token=token,
        tls=ClientTLS(tls_ca) if tls_ca else None,
        max_spool_bytes=getattr(args, "spool_max_bytes", 1024 * 1024 * 1024),
    )
