"""The capture's --decoder flag: who turns ring-buffer records into RRPairs."""

from __future__ import annotations

import argparse
import os

from nodetap.errors import ConfigError

DECODERS = ("core", "python")


def add_arguments(p: argparse.ArgumentParser) -> None:
    """--decoder core|python."""
    p.add_argument(
        "--decoder",
        choices=DECODERS,
        default=None,
        help="decode records in the Rust core (core: at once, no deferred spool) or in "
        "Python (python: the record loop of agent/capture.py, deferred decoding possible); "
        "default: $NODETAP_DECODER, else python",
    )


def decoder(args: argparse.Namespace) -> str:
    """The decoder the flags (or NODETAP_DECODER) ask for."""
    chosen = getattr(args, "decoder", None) or os.environ.get("NODETAP_DECODER") or "python"
    if chosen not in DECODERS:
        raise ConfigError(
            f"NODETAP_DECODER={chosen!r} is not a decoder; use one of {', '.join(DECODERS)}"
        )
    return chosen
