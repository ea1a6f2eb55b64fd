"""The `nodetap` command: one entry point, subcommands in their own modules.

Each module in cli/commands/ exposes ``register(subparsers)``, which adds its
subparser and sets ``func`` (a callable taking the parsed args, returning an exit code).
Foreseeable failures raise ``nodetap.errors.NodetapError`` (or a subclass): one line on
stderr, exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import Any

from nodetap.errors import NodetapError

# A foreseeable failure (nodetap.errors.NodetapError): one line on stderr, this exit code.
EXIT_USAGE = 2

# Subcommand modules, in the order `nodetap --help` lists them.
COMMANDS = (
    "demo",
    "capture",
    "import_pcap",
    "export",
    "forwarder",
    "snapshot",
    "rules",
    "replay",
    "replay_agent",
    "responder",
    "netsetup",
    "status",
    "completion",
    "k8s_secrets",
)


def _version() -> str:
    try:
        return f"nodetap {metadata.version('nodetap')}"
    except metadata.PackageNotFoundError:
        return "nodetap (not installed: version unknown)"


class NodetapParser(argparse.ArgumentParser):
    """A parser that accepts the global flags too: `nodetap capture -v` as `nodetap -v capture`.

    Subparsers are created with the class of their parent, so every level (`netsetup status`)
    gets them. The default is suppressed so that a subcommand's parse does not reset a flag
    given before it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.add_argument(
            "-v",
            "--verbose",
            action="count",
            default=argparse.SUPPRESS,
            help="more logging (-vv: debug); accepted before or after the subcommand",
        )


# Subcommands whose name is not their module's name with - for _.
_NAMES = {"import_pcap": "import", "completion": "completion"}


def _command_name(module: str) -> str:
    return _NAMES.get(module, module.replace("_", "-"))


def _chosen(argv: Sequence[str] | None) -> str | None:
    """The module of the subcommand argv names (the first word not a flag), if any.

    Only that module is imported to run a command: each process then holds only its own
    metrics (a forwarder's /metrics carries no capture counters at 0) and starts faster.
    """
    for word in argv or ():
        if not word.startswith("-"):
            return next((m for m in COMMANDS if _command_name(m) == word), None)
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The whole parser; with argv naming a subcommand, the parser of that one only."""
    parser = NodetapParser(
        prog="nodetap",
        description="Node-level, sidecar-less L7 traffic capture and replay.",
        epilog="Run 'nodetap COMMAND --help' for a command's flags and examples.",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = _chosen(argv)
    for name in (chosen,) if chosen else COMMANDS:
        try:
            module = importlib.import_module(f"cli.commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"cli.commands.{name}":
                continue  # not built yet
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    verbose = getattr(args, "verbose", 0)
    level = {0: logging.WARNING, 1: logging.INFO}.get(verbose, logging.DEBUG)
    logging.basicConfig(level=level, format="nodetap: %(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except NodetapError as e:
        print(f"nodetap: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
