"""The live progress display of a replay (rich, on stderr, only when stderr is a terminal)."""

from __future__ import annotations

import sys
from typing import Any


class Progress:
    def __init__(self, total: int | None, enabled: bool | None = None) -> None:
        self.total = total
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._p: Any = None
        self._task: Any = None

    def start(self) -> None:
        if not self.enabled:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as RichProgress

        self._p = RichProgress(
            TextColumn("replay"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
            console=Console(stderr=True),
            transient=True,
        )
        self._p.start()
        self._task = self._p.add_task("replay", total=self.total, info="")

    def update(self, sent: int, errors: int, mismatched: int, fill: float | None = None) -> None:
        if self._p is None:
            return
        info = f"errors {errors}  mismatches {mismatched}"
        if fill is not None:
            info += f"  conntrack {100 * fill:.1f}%"
        self._p.update(self._task, completed=sent, info=info)

    def stop(self) -> None:
        if self._p is not None:
            self._p.stop()
            self._p = None
