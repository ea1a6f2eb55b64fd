"""The argv of the drain process (agent/spool_drain.py), parsed without argparse.

The drain process is not a command a user runs: agent/deferred.py starts it with arguments
that ``spool_drain.command()`` builds, so its flags are an internal interface between two
processes of the agent, and flags a user gives belong to the command line (cli/). This is
a small explicit parser for that interface: ``--flag VALUE`` or ``--flag=VALUE``, the last
one given wins, and anything else raises ``DrainUsageError`` with one line saying what.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

DRAIN_NICE = 10
POLL_INTERVAL = 0.005


class DrainUsageError(ValueError):
    """An argument the drain process cannot use (its message: which one, and why)."""


@dataclasses.dataclass(frozen=True)
class DrainArgs:
    ring_fd: int  # inherited ringbuf map fd
    ring_size: int  # data bytes of the ring
    dir: Path  # the spool directory
    max_bytes: int  # the spool's bound
    committed_fd: int | None = None  # inherited array map fd: committed ring bytes
    poll_interval: float = POLL_INTERVAL  # seconds
    parent: int | None = None  # exit unless this is the parent
    # inherited pipe: written to and closed once draining begins (the parent arms the
    # programs only then, so that no record waits in the ring for this process to start)
    ready_fd: int | None = None
    # niceness to add: a short batch every poll interval need not preempt the workload;
    # the ring buffer holds far more than a poll's worth
    nice: int = DRAIN_NICE
    # when the parent is gone, delete dir (nobody is left to read or remove it)
    remove_dir_if_orphaned: bool = False


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise DrainUsageError(f"not an integer: {text!r}") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text, 0)
    except ValueError:
        raise DrainUsageError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise DrainUsageError(f"must be positive, not {value}")
    return value


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DrainUsageError(f"not a number: {text!r}") from None
    if not 0 < value <= 10:
        raise DrainUsageError(f"must be in (0, 10] seconds, not {value}")
    return value


# flag -> (DrainArgs field, parser of its value)
_VALUED: dict[str, tuple[str, Callable[[str], Any]]] = {
    "--ring-fd": ("ring_fd", _int),
    "--ring-size": ("ring_size", _positive_int),
    "--dir": ("dir", Path),
    "--max-bytes": ("max_bytes", _positive_int),
    "--committed-fd": ("committed_fd", _int),
    "--poll-interval": ("poll_interval", _interval),
    "--parent": ("parent", _positive_int),
    "--ready-fd": ("ready_fd", _int),
    "--nice": ("nice", _int),
}
_SWITCHES = {"--remove-dir-if-orphaned": "remove_dir_if_orphaned"}
_REQUIRED = ("--ring-fd", "--ring-size", "--dir", "--max-bytes")


def parse_args(argv: Sequence[str]) -> DrainArgs:
    """The DrainArgs of argv (the arguments after ``python -m agent.spool_drain``)."""
    values: dict[str, Any] = {}
    given: set[str] = set()
    words = list(argv)
    i = 0
    while i < len(words):
        word = words[i]
        i += 1
        flag, eq, inline = word.partition("=")
        if flag in _SWITCHES and not eq:
            values[_SWITCHES[flag]] = True
            continue
        if flag not in _VALUED:
            raise DrainUsageError(f"unknown argument {word!r}")
        if eq:
            text = inline
        elif i < len(words):
            text = words[i]
            i += 1
        else:
            raise DrainUsageError(f"{flag} needs a value")
        field, parse = _VALUED[flag]
        try:
            values[field] = parse(text)
        except DrainUsageError as e:
            raise DrainUsageError(f"{flag}: {e}") from None
        given.add(flag)
    missing = [f for f in _REQUIRED if f not in given]
    if missing:
        raise DrainUsageError(f"missing {', '.join(missing)}")
    return DrainArgs(**values)
