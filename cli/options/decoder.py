"""The capture's --decoder flag: who turns ring-buffer records into RRPairs.

``core`` (the default): the Rust core decodes every batch at once (agent/capture_core.py).
``python``: agent/capture.py's record loop, the oracle of the differential tests.
"""

from __future__ import annotations

import argparse
import os

from nodetap.errors import ConfigError

DECODERS = ("core", "python")
DEFAULT = "core"


def add_arguments(p: argparse.ArgumentParser) -> None:
    """--decoder core|python."""
    p.add_argument(
        "--decoder",
        choices=DECODERS,
        default=None,
        help="decode records in the Rust core (core, the default) or in Python (python); "
        "default: $NODETAP_DECODER, else core",
    )


def decoder(args: argparse.Namespace) -> str:
    """The decoder the flags (or NODETAP_DECODER) ask for."""
    chosen = getattr(args, "decoder", None) or os.environ.get("NODETAP_DECODER") or DEFAULT
    if chosen not in DECODERS:
        raise ConfigError(
            f"NODETAP_DECODER={chosen!r} is not a decoder; use one of {', '.join(DECODERS)}"
        )
    return chosen
