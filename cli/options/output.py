"""Output flags with one meaning in every subcommand: `-o FORMAT` (as kubectl) and
`-w FILE` (as tcpdump).

`-o` names a format everywhere (`export -o json` writes JSON, never a file named json);
`-w FILE` names the file written; `--format` is kept as another name of `-o`. An `-o` value
that is no format but plainly a path (it holds a dot or a slash, or is `-`) is still taken as
the file, with a warning, so that command lines written for the earlier `-o FILE` keep
working while they are updated (on a terminal, with a warning; scripts see stderr as
before).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from typing import Any

# Names users bring from other tools, mapped to ours per command (kubectl's json is a
# stream of RRPairs: JSONL).
RRPAIR_ALIASES = {"json": "jsonl", "ndjson": "jsonl"}


def _looks_like_file(value: str) -> bool:
    return value == "-" or "/" in value or "." in value


class _FormatAction(argparse.Action):
    """-o/--output/--format FORMAT; with files, a path given to -o is the file (warned)."""

    def __init__(
        self,
        option_strings: Sequence[str],
        dest: str,
        *,
        formats: Sequence[str] = (),
        aliases: Mapping[str, str] | None = None,
        files: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.formats = tuple(formats)
        self.aliases = dict(aliases or {})
        self.files = files

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        value = str(values)
        name = self.aliases.get(value.lower(), value.lower())
        if name in self.formats:
            setattr(namespace, self.dest, name)
            namespace.format_given = True
            return
        if self.files and option_string in ("-o", "--output") and _looks_like_file(value):
            if sys.stderr.isatty():  # for a person; scripts read stderr's lines as before
                print(
                    f"nodetap: warning: {option_string} {value}: {option_string} names a format "
                    f"({', '.join(self.formats)}), as in kubectl; write the file with "
                    f"-w {value} (as tcpdump). Taken as -w this time.",
                    file=sys.stderr,
                )
            namespace.write = value
            return
        hint = f"; write a file with -w {value}" if self.files else ""
        parser.error(
            f"{option_string} {value}: invalid choice, not a format; use one of "
            f"{', '.join(self.formats)}{hint}"
        )


def add_format_argument(
    p: argparse.ArgumentParser,
    formats: Sequence[str],
    default: str,
    *,
    aliases: Mapping[str, str] | None = None,
    files: bool = False,
    format_flag: bool = False,
    help: str = "",
) -> None:
    """`-o/--output FORMAT` (and `--format` when format_flag), stored in args.format."""
    listed = "|".join(formats)
    names = ["-o", "--output"] + (["--format"] if format_flag else [])
    p.add_argument(
        *names,
        dest="format",
        action=_FormatAction,
        formats=formats,
        aliases=aliases,
        files=files,
        default=default,
        metavar=listed if len(listed) < 30 else "FORMAT",
        help=(help or "output format") + f" (default {default}; as kubectl -o)",
    )
    p.set_defaults(format_given=False)


def add_write_argument(p: argparse.ArgumentParser, what: str = "output") -> None:
    """`-w/--write FILE` (as tcpdump -w), stored in args.write ('-': stdout)."""
    p.add_argument(
        "-w",
        "--write",
        dest="write",
        metavar="FILE",
        default="-",
        help=f"write the {what} to FILE (as tcpdump -w; default stdout)",
    )


def format_of_file(path: str, by_suffix: Mapping[str, str]) -> str | None:
    """The format a file name's suffix names (`cap.har` -> har), if any."""
    for suffix, fmt in by_suffix.items():
        if path.lower().endswith(suffix):
            return fmt
    return None


def resolve_format(args: argparse.Namespace, by_suffix: Mapping[str, str]) -> None:
    """Without -o, a -w file's suffix chooses the format (`-w cap.pcap` writes pcap)."""
    if not getattr(args, "format_given", False) and args.write != "-":
        args.format = format_of_file(args.write, by_suffix) or args.format


def dump_structured(doc: Any, fmt: str) -> str:
    """A JSON-able document as json or yaml text (ending in a newline)."""
    if fmt == "yaml":
        import yaml

        return str(yaml.safe_dump(doc, sort_keys=False, default_flow_style=False))
    import json

    return json.dumps(doc, indent=2) + "\n"
