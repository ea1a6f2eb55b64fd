"""RRPair JSONL: the proto3 JSON mapping, one RRPair per line.

Reading is a stream (one line at a time), so a capture of any size costs constant memory.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from collections.abc import Iterable, Iterator
from typing import IO

from google.protobuf import json_format

from nodetap import rrpair_json
from nodetap.errors import NodetapError
from nodetap.v1 import rrpair_pb2 as pb


class CaptureFormatError(ValueError):
    """A line of a JSONL capture is not an RRPair."""


def dumps(pair: pb.RRPair) -> str:
    """One RRPair as one JSON line (no trailing newline)."""
    return rrpair_json.dumps(pair)


def loads(line: str | bytes, where: str = "") -> pb.RRPair:
    """Parse one JSON line into an RRPair; CaptureFormatError says where and why."""
    try:
        return json_format.Parse(line, pb.RRPair(), ignore_unknown_fields=True)
    except json_format.ParseError as e:
        raise CaptureFormatError(f"{where}: not an RRPair: {e}") from None
    except RecursionError:
        raise CaptureFormatError(f"{where}: not an RRPair: JSON nested too deeply") from None


def write(fp: IO[str], pair: pb.RRPair) -> None:
    fp.write(dumps(pair))
    fp.write("\n")


def _decode(raw: bytes, where: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CaptureFormatError(
            f"{where}: not UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1}); "
            "JSONL captures are UTF-8"
        ) from None


def iter_file(fp: IO[str] | IO[bytes], name: str = "<stream>") -> Iterator[pb.RRPair]:
    """Yield the RRPairs of a JSONL stream (text, or bytes decoded line by line), skipping
    blank lines. A line that is not UTF-8 is a CaptureFormatError naming it."""
    lines: Iterable[str | bytes] = fp
    for lineno, raw in enumerate(lines, 1):
        line = raw if isinstance(raw, str) else _decode(raw, f"{name}:{lineno}")
        if line.strip():
            yield loads(line, f"{name}:{lineno}")


def private_opener(path: str, flags: int) -> int:
    """An opener for open(): a new file is 0600, an existing regular file is made 0600 (a
    capture holds what the traffic held); devices and pipes keep their mode."""
    fd = os.open(path, flags, 0o600)
    if stat.S_ISREG(os.fstat(fd).st_mode):
        os.fchmod(fd, 0o600)
    return fd


@contextlib.contextmanager
def open_output(path: str) -> Iterator[IO[str]]:
    """A text output for JSONL (or a table): the file at `path`, or stdout for "-"; a path
    that cannot be written is a one-line NodetapError."""
    if path == "-":
        yield sys.stdout
        sys.stdout.flush()
        return
    try:
        fp = open(path, "w", encoding="utf-8", opener=private_opener)  # noqa: SIM115
    except OSError as e:
        raise NodetapError(f"cannot write {path}: {e.strerror}; check the path") from None
    with fp:
        yield fp


def read_path(path: str) -> Iterator[pb.RRPair]:
    """Yield the RRPairs of a JSONL file ("-" for stdin)."""
    if path == "-":
        yield from iter_file(sys.stdin.buffer, "<stdin>")
        return
    with open(path, "rb") as fp:
        yield from iter_file(fp, path)
