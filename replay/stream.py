"""Live shadowing: `nodetap capture ... | nodetap replay - --target URL`.

The coordinator's feeder thread reads RRPair JSON lines from a stream as they arrive, keeps one
side of each exchange (a streaming form of replay/sides.py's rule: an OUTBOUND or NETWORK copy
is sent only while no INBOUND copy to the same server has been seen, and once a pair addressed
to the target itself was seen, only those), and hands the lines round-robin to the replay
processes through bounded queues: a slow target holds the reader back instead of filling
memory. Each process sends what it gets at once (or at --rate).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from replay.sides import line_key

QUEUE_LINES = 256  # per replay process: bounded memory, whatever the input's length
END = None


@dataclass
class StreamSelector:
    direction: str
    target: str  # "ip:port"
    inbound_seen: set[str] = field(default_factory=set)
    target_seen: bool = False
    kept: int = 0
    skipped: int = 0

    def wants(self, line: str) -> bool:
        server, d = line_key(line)
        keep = self._wants(server, d)
        if keep:
            self.kept += 1
        else:
            self.skipped += 1
        return keep

    def _wants(self, server: str, d: str) -> bool:
        if self.direction == "any":
            return True
        if self.direction != "auto":
            return d == self.direction.upper()
        if server == self.target:
            self.target_seen = True
        elif self.target_seen:
            return False
        if d == "INBOUND":
            self.inbound_seen.add(server)
            return True
        return server not in self.inbound_seen

    def to_dict(self) -> dict[str, Any]:
        return {
            "kept": self.kept,
            "skipped": self.skipped,
            "reason": f"streamed, --direction {self.direction}",
        }


class Feeder:
    """Reads lines from `source` on a thread; puts the selected ones on the queues."""

    def __init__(self, source: Iterable[str], queues: list[Any], selector: StreamSelector):
        self.source, self.queues, self.sel = source, queues, selector
        self.stop = threading.Event()
        self.lines = 0
        self.error: str | None = None
        self.thread = threading.Thread(target=self._run, name="replay-stdin", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _put(self, q: Any, item: Any) -> bool:
        while not self.stop.is_set():
            try:
                q.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        k = 0
        try:
            for line in self.source:
                if self.stop.is_set():
                    break
                if not line.strip() or not self.sel.wants(line):
                    continue
                self.lines += 1
                if not self._put(self.queues[k % len(self.queues)], (k, line)):
                    break
                k += 1
        except (OSError, UnicodeDecodeError) as e:
            self.error = f"reading the input: {e}"
        finally:
            for q in self.queues:
                with contextlib.suppress(Exception):
                    self._put(q, END)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=1)
