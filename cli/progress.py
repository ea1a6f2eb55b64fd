"""Progress bars (rich) for long work when a person watches: stderr is a terminal.

Quiet otherwise: a pipe, a file or CI gets no bar and no control characters. The bar is
transient (gone once the work is done), so the summary line stays the last thing shown.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterable, Iterator
from typing import IO, Any, BinaryIO, TypeVar, cast

T = TypeVar("T")


def wanted(stream: IO[str] | None = None) -> bool:
    """A bar is drawn only on a terminal (and not with TERM=dumb)."""
    s = stream if stream is not None else sys.stderr
    return s.isatty() and os.environ.get("TERM") != "dumb"


def _progress() -> Any:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return (
        Progress,
        (
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            DownloadColumn,
            MofNCompleteColumn,
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        ),
        Console(file=sys.stderr),
    )


class _CountingReader:
    """A binary file whose reads advance a progress task."""

    def __init__(self, fp: IO[bytes], advance: Any) -> None:
        self._fp = fp
        self._advance = advance

    def read(self, n: int = -1) -> bytes:
        data = self._fp.read(n)
        self._advance(len(data))
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._fp, name)


@contextlib.contextmanager
def reading(fp: BinaryIO, total: int | None, label: str) -> Iterator[BinaryIO]:
    """`fp`, drawing a bar of bytes read out of `total` on a terminal."""
    if not wanted():
        yield fp
        return
    progress_cls, cols, console = _progress()
    text, bar, download, _, elapsed, remaining = cols
    with progress_cls(
        text, bar, download(), elapsed, remaining, console=console, transient=True
    ) as progress:
        task = progress.add_task(label, total=total)
        yield cast(BinaryIO, _CountingReader(fp, lambda n: progress.advance(task, n)))


def counting(items: Iterable[T], total: int | None, label: str) -> Iterator[T]:
    """The items, drawing a bar of items done (out of `total`) on a terminal."""
    if not wanted():
        yield from items
        return
    progress_cls, cols, console = _progress()
    text, bar, _, count, elapsed, _ = cols
    with progress_cls(text, bar, count(), elapsed, console=console, transient=True) as progress:
        task = progress.add_task(label, total=total)
        for item in items:
            yield item
            progress.advance(task)
