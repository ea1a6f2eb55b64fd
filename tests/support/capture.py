"""Run a real syscall capture inside a test and collect its RRPairs."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from agent.capture import CaptureConfig, SyscallCapture
from agent.rules import RuleEngine
from nodetap.v1 import rrpair_pb2 as pb


@dataclass
class LiveCapture:
    cap: SyscallCapture
    pairs: list[pb.RRPair] = field(default_factory=list)
    _cv: threading.Condition = field(default_factory=threading.Condition)

    def _emit(self, pair: pb.RRPair) -> None:
        with self._cv:
            self.pairs.append(pair)
            self._cv.notify_all()

    def wait_for(
        self,
        n: int,
        timeout: float = 15.0,
        where: Callable[[pb.RRPair], bool] = lambda p: True,
    ) -> list[pb.RRPair]:
        """Wait until n RRPairs matching `where` arrived; return them (fails on timeout)."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while True:
                got = [p for p in self.pairs if where(p)]
                if len(got) >= n:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        f"expected {n} RRPairs, got {len(got)} after {timeout}s; "
                        f"summary: {self.cap.summary()}"
                    )
                self._cv.wait(min(left, 0.05))

    def inbound(self) -> list[pb.RRPair]:
        return [p for p in self.pairs if p.direction == pb.INBOUND]

    def outbound(self) -> list[pb.RRPair]:
        return [p for p in self.pairs if p.direction == pb.OUTBOUND]

    def settle(self, quiet: float = 0.3, timeout: float = 10.0) -> None:
        """Wait until no new RRPair arrived for `quiet` seconds."""
        deadline = time.monotonic() + timeout
        last = -1
        while time.monotonic() < deadline:
            with self._cv:
                n = len(self.pairs)
            if n == last:
                return
            last = n
            time.sleep(quiet)


@contextlib.contextmanager
def live_capture(**cfg_kwargs: object) -> Iterator[LiveCapture]:
    """Start a SyscallCapture (CaptureConfig fields as keywords; ``rules=`` a RuleEngine the
    core decoder runs) draining in a thread.

    On exit the capture is closed (probes detached) and `lc.cap.summary()` stays readable.
    """
    rules = cfg_kwargs.pop("rules", None)
    assert rules is None or isinstance(rules, RuleEngine)
    holder: list[LiveCapture] = []
    cfg = CaptureConfig(**cfg_kwargs)  # type: ignore[arg-type]
    cap = SyscallCapture(cfg, lambda p: holder[0]._emit(p), rules=rules)
    lc = LiveCapture(cap)
    holder.append(lc)
    cap.start()
    stop = threading.Event()
    t = threading.Thread(target=cap.run, args=(stop,), daemon=True)
    t.start()
    try:
        yield lc
    finally:
        stop.set()
        t.join(timeout=10)
        cap.close()
