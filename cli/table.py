"""A human-readable line per RRPair (`--format table`), fitted to the terminal's width.

Columns are dropped, least useful first, until a row fits the width; the URL takes what is
left (at least 20 characters) and is cut. Without a width (not a terminal) every column
is written. Rows are written and flushed one by one, as exchanges complete.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from nodetap.v1 import rrpair_pb2 as pb

_DIR = {pb.INBOUND: "in", pb.OUTBOUND: "out", pb.NETWORK: "net"}
URL_MIN = 20
URL_MAX = 80


def _time(p: pb.RRPair) -> str:
    t = p.ts.ToDatetime()
    return f"{t:%H:%M:%S}.{t.microsecond // 1000:03d}"


def _status(p: pb.RRPair) -> str:
    return str(p.http.res.status_code) if p.http.HasField("res") else "-"


@dataclass(frozen=True)
class Column:
    name: str
    width: int
    right: bool
    value: Callable[[pb.RRPair], str]
    keep: int  # the lower, the longer it stays when the width is short


COLUMNS = (
    Column("TIME", 12, False, _time, 0),
    Column("DIR", 3, False, lambda p: _DIR.get(p.direction, "?"), 4),
    # packet-mode RRPairs have no process: "-" rather than PID 0
    Column("PID", 7, True, lambda p: str(p.meta.pid) if p.meta.pid else "-", 7),
    Column("COMM", 12, False, lambda p: p.meta.comm[:12] or "-", 8),
    Column("CLIENT", 21, False, lambda p: f"{p.client.ip}:{p.client.port}", 6),
    Column("SERVER", 21, False, lambda p: f"{p.server.ip}:{p.server.port}", 3),
    Column("METHOD", 7, False, lambda p: p.http.req.method[:7], 0),
    Column("STATUS", 6, True, _status, 0),
    Column("MS", 8, True, lambda p: f"{p.duration_us / 1000:.2f}", 1),
    Column("REQ B", 8, True, lambda p: str(p.http.req.body_size), 5),
    Column("RES B", 8, True, lambda p: str(p.http.res.body_size), 2),
)


def fit(width: int | None) -> tuple[list[Column], int]:
    """The columns that fit `width` (None: all) and the room left for the URL."""
    cols = list(COLUMNS)
    if width is None:
        return cols, URL_MAX

    def used(cs: list[Column]) -> int:
        return sum(c.width + 1 for c in cs) + 1  # a space after each, two before the URL

    for drop in sorted(COLUMNS, key=lambda c: -c.keep):
        if used(cols) + URL_MIN <= width or drop.keep == 0:
            break
        cols.remove(drop)
    return cols, max(URL_MIN, min(URL_MAX, width - used(cols)))


def _cell(c: Column, text: str) -> str:
    return f"{text:>{c.width}}" if c.right else f"{text:<{c.width}}"


def header(cols: list[Column]) -> str:
    return " ".join(_cell(c, c.name) for c in cols) + "  URL  FLAGS"


def row(pair: pb.RRPair, cols: list[Column], url_width: int) -> str:
    url = pair.http.req.url
    if len(url) > url_width:
        url = url[: url_width - 1] + "…"
    cells = " ".join(_cell(c, c.value(pair)) for c in cols)
    return f"{cells}  {url}  {','.join(pair.flags)}".rstrip()


HEADER = header(list(COLUMNS))


def format_row(pair: pb.RRPair) -> str:
    """A row with every column (no width limit)."""
    return row(pair, list(COLUMNS), URL_MAX)


class TableWriter:
    """Writes the header once, then a line per RRPair, flushed; fitted to the terminal
    when `out` is one (or to `width`)."""

    def __init__(self, out: IO[str], width: int | None = None) -> None:
        self.out = out
        if width is None and out.isatty():
            width = shutil.get_terminal_size().columns
        self.columns, self.url_width = fit(width)
        self._started = False

    def write(self, pair: pb.RRPair) -> None:
        if not self._started:
            self.out.write(header(self.columns) + "\n")
            self._started = True
        self.out.write(row(pair, self.columns, self.url_width) + "\n")
        self.out.flush()
