"""--forwarder ADDR, --token-file, --tls-ca, --tls-cert, --tls-key: a client of a forwarder
(`nodetap export`, `nodetap snapshot`)."""

from __future__ import annotations

import argparse

from cli.options.tokens import read_token
from forwarder.client import ForwarderClient
from nodetap.transport import ClientTLS


def add_client_arguments(parser: argparse.ArgumentParser, *, required: bool = True) -> None:
    """--forwarder ADDR, --token-file, --tls-ca, --tls-cert, --tls-key."""
    add = parser.add_argument
    add("--forwarder", metavar="ADDR", required=required, help="forwarder address HOST:PORT")
    add("--token-file", metavar="FILE", help="file holding the forwarder's bearer token")
    add("--tls-ca", metavar="FILE", help="CA certificate: connect with TLS and verify the server")
    add("--tls-cert", metavar="FILE", help="client certificate (when the forwarder asks for one)")
    add("--tls-key", metavar="FILE", help="client certificate's private key")


def client_tls(args: argparse.Namespace) -> ClientTLS | None:
    """TLS settings from --tls-ca (and --tls-cert, --tls-key), or None for plaintext."""
    if not args.tls_ca:
        return None
    return ClientTLS(args.tls_ca, args.tls_cert, args.tls_key)


def client_from_args(args: argparse.Namespace) -> ForwarderClient:
    """A connection to the forwarder named by the flags of add_client_arguments."""
    return ForwarderClient(args.forwarder, token=read_token(args.token_file), tls=client_tls(args))
