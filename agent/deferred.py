"""Deferred decoding: the drain process spools the ring buffer, this process decodes later.

Decoding HTTP in Python costs tens of microseconds of CPU per exchange; at a busy
server's rate that is a core the server would otherwise have. With a spool, the work a
capture must do at once (empty the kernel's ring buffer before it overflows) is done by a
small process at normal priority (agent.spool_drain), and the decoding thread runs at
SCHED_IDLE: it gets only CPU time nothing else wants, falls behind during a burst and
catches up after it, with the spool (bounded, on disk) as the buffer. The work is
deferred, not avoided: a node that is never idle fills the spool, then the ring buffer,
and the kernel counts what it drops.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from agent import spool_drain
from agent.ring_spool import RingSpoolReader
from nodetap.errors import StorageError

log = logging.getLogger(__name__)

STOP_TIMEOUT = 30.0
READY_TIMEOUT = 30.0  # seconds for the drain process to start draining


class DeferredDecode:
    """A running drain process, the spool it writes and the reader of that spool."""

    def __init__(
        self,
        ring_fd: int,
        ring_size: int,
        max_bytes: int,
        parent_dir: str | None = None,
        poll_interval: float = 0.02,
        committed_fd: int | None = None,
    ) -> None:
        """Start the drain process on the ring buffer `ring_fd` (and the count of its
        committed bytes, `committed_fd`: bpf/common.h); the spool is a fresh directory
        inside `parent_dir` (default: the system's temporary directory), removed by
        remove()."""
        try:
            self.dir = Path(tempfile.mkdtemp(prefix="nodetap-spool-", dir=parent_dir))
        except OSError as e:
            raise StorageError(
                f"cannot create the spool in {parent_dir or tempfile.gettempdir()}: "
                f"{e.strerror or e}; choose another --defer-dir"
            ) from None
        self.max_bytes = max_bytes
        ready_r, ready_w = os.pipe()
        fds = (ring_fd, ready_w) if committed_fd is None else (ring_fd, committed_fd, ready_w)
        self.proc = subprocess.Popen(
            spool_drain.command(
                ring_fd,
                ring_size,
                self.dir,
                max_bytes,
                f"--poll-interval={poll_interval}",
                f"--parent={os.getpid()}",
                "--remove-dir-if-orphaned",
                *([f"--committed-fd={committed_fd}"] if committed_fd is not None else []),
                f"--ready-fd={ready_w}",
            ),
            pass_fds=fds,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            text=True,
        )
        os.close(ready_w)
        with os.fdopen(ready_r, "rb") as ready:
            # until the drain process runs, a burst would find the ring buffer full
            if not select.select([ready], [], [], READY_TIMEOUT)[0] or not ready.readline():
                log.warning("the spool drain process is not draining (yet)")
        self.reader = RingSpoolReader(self.dir)
        self.counters: dict[str, int] = {}
        self._stopped = False

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> dict[str, int]:
        """Let the drain process move what the ring still holds, then end it; return
        its counters (bytes, extents, unwalked, refusals). Once: later calls return the same."""
        if self._stopped:
            return self.counters
        self._stopped = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        if self.proc.returncode != 0:
            log.warning("the spool drain process ended with status %s", self.proc.returncode)
        with contextlib.suppress(ValueError):
            lines = (out or "").strip().splitlines()
            self.counters = {k: int(v) for k, v in json.loads(lines[-1]).items()} if lines else {}
        return self.counters

    def remove(self) -> None:
        """Close the reader and delete the spool (the drain process must have ended)."""
        self.reader.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def idle_priority(enabled: bool = True) -> Iterator[None]:
    """Run the calling thread at SCHED_IDLE inside the block, then restore its policy."""
    if not enabled:
        yield
        return
    policy = os.sched_getscheduler(0)
    param = os.sched_getparam(0)
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except OSError as e:
        log.warning("could not lower the decoder's priority: %s", e)
        yield
        return
    try:
        yield
    finally:
        os.sched_setscheduler(0, policy, param)


def _cpu_jiffies() -> tuple[int, int]:
    """(busy, idle) jiffies of all CPUs since boot, from /proc/stat."""
    with open("/proc/stat", "rb") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields[:8]) - idle, idle


class IdleGate:
    """Tells the decoder whether the node has CPU to spare.

    SCHED_IDLE alone is not enough on a saturated node: the decoder still runs in the
    short idle gaps between a server's wake-ups, and its cache misses and the extra
    preemptions cost the server (measured: ~14% of nginx's requests per second on 2 busy
    cores). So the decoder decodes only while the node leaves at least `min_idle_cpus`
    CPUs idle, or when the spool is filling up (`pressure`).

    Idle time can only be measured while the decoder is not running (it takes the idle
    time it measures), so an open gate closes for one interval to look again every
    `probe_every` seconds, and at once when the backlog grew by more than `growth`
    bytes in an interval although the decoder was running (traffic outruns it: a load
    has begun); a closed gate looks every interval.
    """

    def __init__(
        self,
        min_idle_cpus: float = 0.5,
        interval: float = 0.1,
        probe_every: float = 0.5,
        growth: int = 256 << 10,
    ) -> None:
        self.min_idle_cpus = min_idle_cpus
        self.interval = interval
        self.probe_every = probe_every
        self.growth = growth
        self._backlog = 0
        self._tick = os.sysconf("SC_CLK_TCK")
        self._last = time.monotonic()
        self._idle = _cpu_jiffies()[1]
        self._state = "probing"  # the first interval measures
        self._opened = 0.0
        self.paused_s = 0.0

    def allows(self, backlog: int = 0, pressure: bool = False) -> bool:
        """Whether to decode now, with `backlog` bytes waiting (re-sampled every
        `interval` seconds)."""
        now = time.monotonic()
        elapsed = now - self._last
        if elapsed >= self.interval:
            idle = _cpu_jiffies()[1]
            if self._state == "open":
                grew = backlog - self._backlog > self.growth
                if grew or now - self._opened >= self.probe_every:
                    self._state = "probing"  # pause for one interval to measure
            else:
                # nothing was decoded in this window: its idle time is the node's own
                self.paused_s += elapsed
                spare = (idle - self._idle) / self._tick / elapsed
                if spare >= self.min_idle_cpus:
                    self._state, self._opened = "open", now
                else:
                    self._state = "closed"
            self._last, self._idle, self._backlog = now, idle, backlog
        return self._state == "open" or pressure
