"""The capture's --decoder flag: who turns ring-buffer records into RRPairs.

``core`` (the default): the Rust core decodes every batch at once (agent/capture_core.py);
nothing is deferred. ``python``: agent/capture.py's record loop, which can defer decoding
to idle CPU time through a disk spool (--defer-max, --defer-dir). Without --decoder,
asking for a spool (--defer-max above 0, --defer-dir) chooses ``python``.
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
        help="decode records in the Rust core (core, the default: at once) or in Python "
        "(python: the only one that can defer decoding to a spool, --defer-max); "
        "default: $NODETAP_DECODER, else python when a spool is asked for, else core",
    )


def decoder(args: argparse.Namespace) -> str:
    """The decoder the flags (or NODETAP_DECODER) ask for."""
    chosen = getattr(args, "decoder", None)
    defer_max = getattr(args, "defer_max", None)
    spool = bool(defer_max) or getattr(args, "defer_dir", None) is not None
    if chosen == "core" and spool:
        raise ConfigError(
            "--decoder core decodes at once and keeps no spool; drop --defer-max/--defer-dir "
            "or use --decoder python"
        )
    if chosen is None:
        if spool:
            return "python"
        chosen = os.environ.get("NODETAP_DECODER") or DEFAULT
    if chosen not in DECODERS:
        raise ConfigError(
            f"NODETAP_DECODER={chosen!r} is not a decoder; use one of {', '.join(DECODERS)}"
        )
    return chosen
