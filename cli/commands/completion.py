"""`nodetap completion SHELL` and `nodetap man`: shell completion (shtab) and a man page,
both generated from the parser, so they cannot drift from the flags."""

from __future__ import annotations

import argparse
import datetime
import sys
from typing import Any

EPILOG = """\
examples:
  nodetap completion bash > /etc/bash_completion.d/nodetap
  nodetap completion zsh > "${fpath[1]}/_nodetap"
  nodetap man > /usr/local/share/man/man1/nodetap.1 && man nodetap
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "completion",
        help="print a shell completion script (bash, zsh, tcsh)",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("shell", choices=("bash", "zsh", "tcsh"))
    p.set_defaults(func=run_completion)
    m = sub.add_parser(
        "man",
        help="print the nodetap(1) man page (roff)",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    m.set_defaults(func=run_man)


def _full_parser() -> argparse.ArgumentParser:
    from cli.main import build_parser

    return build_parser()


def run_completion(args: argparse.Namespace) -> int:
    import shtab

    sys.stdout.write(shtab.complete(_full_parser(), shell=args.shell))
    return 0


def _roff(text: str) -> str:
    lines = []
    for line in text.replace("\\", "\\e").splitlines():
        lines.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(lines)


def man_page(parser: argparse.ArgumentParser) -> str:
    from cli.main import _version

    date = datetime.date.today().isoformat()
    out = [
        f'.TH NODETAP 1 "{date}" "{_version()}" "User Commands"',
        ".SH NAME",
        "nodetap \\- " + _roff(parser.description or ""),
        ".SH SYNOPSIS",
        ".nf",
        _roff(parser.format_usage().removeprefix("usage: ").strip()),
        ".fi",
        ".SH DESCRIPTION",
        ".nf",
        _roff(parser.format_help()),
        ".fi",
        ".SH COMMANDS",
    ]
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, sub in subs.choices.items():
        out += [f".SS {name}", ".nf", _roff(sub.format_help()), ".fi"]
    out += [".SH SEE ALSO", "tcpdump(1), kubectl(1)", ""]
    return "\n".join(out)


def run_man(args: argparse.Namespace) -> int:
    sys.stdout.write(man_page(_full_parser()))
    return 0
