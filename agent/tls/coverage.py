"""The TLS coverage of a capture: which targeted processes use which TLS library, whether
it is hooked, and if not why; the uprobes attached for them (agent/tls/attach.py).

Targeted processes are those the capture's filters let in, found by a bounded /proc rescan
every ``interval`` seconds (processes started later are picked up, exited ones release
their files' probes), and, sooner, through the exec tracepoint (bpf/tls_state.c: the
processes that exec'd, filters applied): a new program is looked at for its first
``young_for`` seconds, as its libraries are mapped (every ``tick`` for 0.1 s, then at
doubling gaps up to 0.5 s: about 20 looks; at most MAX_YOUNG at a time), and its TLS
library probed then;
under a port filter, before it has a socket on one of the ports (it becomes a row of the
table once the capture opens a connection of it, even one it already closed before it
exited; its probes are released if it has none when it stops being young):
- with a pid filter: the processes in the programs' pid filter (the pids and their
  descendants, the kernel adds children as they fork);
- with a cgroup filter: the processes in those cgroups;
- otherwise: processes with a connection the capture tracks, and, when a port filter is
  set, processes with a socket on one of those ports (all processes without one).
Only their TLS libraries are probed: never a file no targeted process maps.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from prometheus_client.core import GaugeMetricFamily

from agent import procfs
from agent.tls.attach import Attacher
from agent.tls.classify import HOOKED, NO_TLS, NOT_HOOKED, Coverage, ExeCache, classify
from agent.tls.maps import read_maps

log = logging.getLogger(__name__)

STATES = (HOOKED, NOT_HOOKED)
# rounds between two looks at a process that had no TLS library
RECHECK_ROUNDS = 10
# processes that exec'd, looked at before the next rescan (the rest wait for it)
MAX_YOUNG = 512
YOUNG_EVERY_TICK = 0.1  # s after its exec looked at every tick (its shared libraries)


def _starttime(pid: int) -> int | None:
    """The process's start time (clock ticks since boot): tells a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    return int(stat[stat.rfind(b")") + 2 :].split()[19])


def _pids() -> Iterable[int]:
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    return (int(n) for n in names if n.isdigit())


class TlsCoverage:
    """Keeps the coverage table and the uprobes of a capture's targeted processes."""

    def __init__(
        self,
        bpf: Any,
        *,
        ports: Iterable[int] = (),
        pid_filter: Callable[[], set[int] | None] = lambda: None,
        cgroup_filter: Callable[[], set[int] | None] = lambda: None,
        tracked: Callable[[], set[int]] = set,
        interval: float = 1.0,
        max_pids: int = 16384,
        execs: Callable[[], list[int]] = list,
        opened: Callable[[], list[int]] = list,
        tick: float = 0.01,
        young_for: float = 5.0,
    ) -> None:
        """``pid_filter``/``cgroup_filter``: the filter's current set, None when off;
        ``tracked``: tgids of the capture's connections; ``execs``: the processes that
        exec'd since the last call; ``opened``: the tgids of the connections the capture
        opened since the last call."""
        self.attacher = Attacher(bpf)
        self.cache = ExeCache()
        self.ports = set(ports)
        self.pid_filter = pid_filter
        self.cgroup_filter = cgroup_filter
        self.tracked = tracked
        self.interval = interval
        self.max_pids = max_pids
        self.execs = execs
        self.opened = opened
        self.tick = tick
        self.young_for = young_for
        # young pid -> [until when it is looked at, when next, the gap after that]
        self._young: dict[int, list[float]] = {}
        self._held: dict[int, tuple[int, int]] = {}  # young pid -> file probed ahead
        self._young_opened: set[int] = set()  # young pids the capture saw a connection of
        self.rows: dict[int, Coverage] = {}  # targeted processes with a TLS library
        self._seen: dict[int, int] = {}  # pid -> start time of the process in rows
        # pid -> (start time, its row or None when no TLS library, scan round it was read)
        self._known: dict[int, tuple[int, Coverage | None, int]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._cg_mount = procfs.cgroup2_mount()
        self.scans = 0
        # called with each new row and each gone process's pid (outside the lock): a pod's
        # note in `nodetap status`, removed when its process is gone
        self.on_row: Callable[[Coverage], None] | None = None
        self.on_gone: Callable[[int], None] | None = None
        self._gone: list[int] = []  # pids released since the callbacks last ran

    # ---- the rescan ----

    def start(self) -> None:
        self.scan()
        self._thread = threading.Thread(target=self._run, name="nodetap-tls", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        next_scan = time.monotonic() + self.interval
        while not self._stop.wait(self.tick):
            try:
                self.look_new()
                if time.monotonic() >= next_scan:
                    self.scan()
                    next_scan = time.monotonic() + self.interval
            except Exception:  # never let coverage stop a capture
                log.warning("TLS coverage rescan failed", exc_info=True)
                next_scan = time.monotonic() + self.interval

    def close(self) -> None:
        """Stop rescanning and detach every probe (before the programs are unloaded)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        with self._lock:
            self.attacher.close()

    def _candidates(self) -> tuple[Iterable[int], bool]:
        """Processes to look at, and whether each is targeted already (else: only when it
        has a socket on a wanted port or a tracked connection)."""
        pids = self.pid_filter()
        if pids is not None:
            return sorted(pids), True
        cgroups = self.cgroup_filter()
        if cgroups is not None:
            return (p for p in _pids() if procfs.cgroup2_id(p, self._cg_mount) in cgroups), True
        return _pids(), not self.ports

    def _on_wanted_port(self, pid: int, tables: dict[int | None, dict[int, Any]]) -> bool:
        ns = procfs.netns_id(pid)
        if ns not in tables:
            tables[ns] = procfs.read_tcp_table(pid)
        table = tables[ns]
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            return False
        for name in fds:
            inode = procfs.socket_inode(pid, int(name))
            sock = table.get(inode) if inode is not None else None
            if sock is not None and {sock.local_port, sock.remote_port} & self.ports:
                return True
        return False

    def scan(self) -> None:
        """One bounded round: new targeted processes classified and hooked, gone ones
        released."""
        candidates, targeted_all = self._candidates()
        tracked = self.tracked()
        tables: dict[int | None, dict[int, Any]] = {}
        alive: set[int] = set()
        new: list[Coverage] = []
        with self._lock:
            for n, pid in enumerate(candidates):
                if n >= self.max_pids:
                    break
                if self._visit(pid, targeted_all, tracked, tables, new):
                    alive.add(pid)
            for pid in [p for p in self.rows if p not in alive]:
                if _starttime(pid) != self._seen.get(pid):  # gone (or reused)
                    self._release(pid)
            self.scans += 1
            if self.scans % RECHECK_ROUNDS == 0:  # forget processes that are gone
                self._known = {p: v for p, v in self._known.items() if _starttime(p) == v[0]}
        self._tell(new)

    def look_new(self) -> None:
        """The processes that exec'd lately, looked at again (their libraries are mapped
        after the exec); the probes held for one that never became targeted released."""
        now = time.monotonic()
        for pid in self.execs():
            if len(self._young) < MAX_YOUNG:  # else the next rescan finds it
                self._young.setdefault(pid, [now + self.young_for, now, self.tick])
        for pid in self.opened():
            young = self._young.get(pid)
            if young is not None:  # targeted now: looked at at once, even if it is gone
                self._young_opened.add(pid)
                young[1] = now
        if not any(now >= y[1] for y in self._young.values()):
            return
        # the kernel let them in by the pid and cgroup filters already (nt_wanted); under a
        # port filter alone, one is targeted once it has a socket on one of the ports
        targeted_all = (
            not self.ports or self.pid_filter() is not None or self.cgroup_filter() is not None
        )
        tracked = self.tracked()
        tables: dict[int | None, dict[int, Any]] = {}
        new: list[Coverage] = []
        with self._lock:
            for pid, young in list(self._young.items()):
                until, due, gap = young
                done = pid in self.rows
                if not done and _starttime(pid) is None:
                    # gone. One probed ahead may have used its connections between two
                    # looks: a row if the capture saw one (maybe only after it exited: it
                    # waits for that till its time is up, looked at again only then)
                    done = pid not in self._held or (
                        pid in self._young_opened and self._gone_row(pid, new)
                    )
                    young[1] = until
                elif not done and now >= due:
                    done = self._visit(pid, targeted_all, tracked, tables, new)
                    # every tick for its first YOUNG_EVERY_TICK seconds, then spaced out
                    if now > until - self.young_for + YOUNG_EVERY_TICK:
                        young[2] = min(2 * gap, 0.5)
                    young[1] = now + young[2]
                if done or now > until:
                    del self._young[pid]
                    self._young_opened.discard(pid)
                    held = self._held.pop(pid, None)
                    if held is not None:
                        self.attacher.release(held, pid)
        self._tell(new)

    def _tell(self, new: list[Coverage]) -> None:
        """The callbacks, outside the lock: gone processes first (a reused pid is both)."""
        with self._lock:
            gone, self._gone = self._gone, []
        if self.on_gone is not None:
            for pid in gone:
                self.on_gone(pid)
        if self.on_row is not None:
            for row in new:
                self.on_row(row)

    def _visit(
        self,
        pid: int,
        targeted_all: bool,
        tracked: set[int],
        tables: dict[int | None, dict[int, Any]],
        new: list[Coverage],
    ) -> bool:
        """Look at pid (a candidate): a new targeted process is classified and hooked.
        Whether it is (still) a row of the table."""
        if pid == os.getpid():
            return False
        start = _starttime(pid)
        if start is None:
            return False
        if pid in self.rows and self._seen.get(pid) == start:
            return True
        young = pid in self._young
        # a young process's maps are read again until a TLS library shows in them; whether
        # it has a socket on a port is left to the rescan (reading the TCP table is slow):
        # its connection is tracked by then, or its file is probed ahead (below)
        row = self._classified(pid, start, fresh=young and pid not in self._held)
        if row is None:
            return False
        by_port = not young and self._on_wanted_port(pid, tables)
        if not (targeted_all or pid in tracked or pid in self._young_opened or by_port):
            # probed ahead: its first TLS calls may come before its socket is seen
            target = row.target if young and pid not in self._held else None
            if target is not None and self.attacher.acquire(target, pid) is None:
                self._held[pid] = target.key
            return False
        if pid in self.rows:  # a reused pid: the old process is gone
            self._release(pid)
        self._add_row(pid, start, row, new)
        return True

    def _gone_row(self, pid: int, new: list[Coverage]) -> bool:
        """A young process that exited after the capture saw a connection of it: its row
        (the next rescan releases it, as it does every gone process's)."""
        known = self._known.get(pid)
        if known is None or known[1] is None:
            return True  # it never mapped a TLS library
        self._add_row(pid, known[0], known[1], new)
        return True

    def _add_row(self, pid: int, start: int, row: Coverage, new: list[Coverage]) -> None:
        if row.target is not None:
            why = self.attacher.acquire(row.target, pid)
            if why is not None:
                row = replace(row, state=NOT_HOOKED, reason=why, target=None)
        held = self._held.pop(pid, None)
        if held is not None and (row.target is None or row.target.key != held):
            self.attacher.release(held, pid)  # else the row holds the same (file, pid) now
        self.rows[pid] = row
        new.append(row)
        self._seen[pid] = start
        log.info("TLS: pid %d %s", pid, row)

    def _classified(self, pid: int, start: int, fresh: bool = False) -> Coverage | None:
        """pid's coverage row (None: no TLS library), from the cache while the process is
        the same; a process without one is looked at again every RECHECK_ROUNDS rounds
        (it may load a library later: Python's ssl module is imported on first use)."""
        known = self._known.get(pid)
        if (
            not fresh
            and known is not None
            and known[0] == start
            and (known[1] is not None or self.scans - known[2] < RECHECK_ROUNDS)
        ):
            return known[1]
        mapped = read_maps(pid)
        row = classify(pid, procfs.comm(pid), mapped, self.cache) if mapped else None
        if row is not None and row.state == NO_TLS:
            row = None
        self._known[pid] = (start, row, self.scans)
        return row

    def _release(self, pid: int) -> None:
        row = self.rows.pop(pid)
        self._seen.pop(pid, None)
        self._gone.append(pid)
        if row.target is not None:
            self.attacher.release(row.target.key, pid)

    # ---- reporting ----

    def table(self) -> list[Coverage]:
        with self._lock:
            return sorted(self.rows.values(), key=lambda r: r.pid)

    def counts(self) -> Counter[tuple[str, str]]:
        """Processes by (library, state)."""
        return Counter((r.library, r.state) for r in self.table())

    def summary(self) -> dict[str, int]:
        c = Counter(r.state for r in self.table())
        return {
            "tls_processes_hooked": c[HOOKED],
            "tls_processes_not_hooked": c[NOT_HOOKED],
            "tls_files_probed": len(self.attacher.files),
        }


def describe(row: Coverage) -> str:
    """One line of the coverage table."""
    return f"pid {row.pid} ({row.comm}): {row.library} {row.state.replace('_', ' ')}: {row.reason}"


def status_rows(cov: TlsCoverage, who: Callable[[int], Any] | None = None) -> list[dict[str, Any]]:
    """The coverage table as JSON rows (`nodetap status`), with the pod of each process
    when ``who`` (the enricher) knows it."""
    out = []
    for r in cov.table():
        ident = who(r.pid) if who is not None else None
        out.append(
            {
                "pid": r.pid,
                "comm": r.comm,
                "library": r.library,
                "state": r.state,
                "reason": r.reason,
                "namespace": getattr(ident, "namespace", "") or "",
                "pod": getattr(ident, "pod", "") or "",
            }
        )
    return out


class PodNotes:
    """Each targeted process's coverage as a note on its pod (agent/targeting.py), removed
    when the process is gone: ``row`` and ``gone`` are TlsCoverage's on_row and on_gone."""

    def __init__(
        self,
        who: Callable[[int], Any],
        note: Callable[[str, str, str], None],
        forget: Callable[[str, str], None],
    ) -> None:
        self._who = who
        self._note = note
        self._forget = forget
        self._pods: dict[int, str] = {}  # pid -> the pod uid its note is on

    def row(self, row: Coverage) -> None:
        try:
            uid = getattr(self._who(row.pid), "pod_uid", "")
        except Exception:  # enrichment must never cost a capture
            return
        if uid:
            self._pods[row.pid] = uid
            self._note(uid, f"tls pid {row.pid}", "TLS " + describe(row))

    def gone(self, pid: int) -> None:
        uid = self._pods.pop(pid, None)
        if uid is not None:
            self._forget(uid, f"tls pid {pid}")


def metric(cov: TlsCoverage | None) -> GaugeMetricFamily:
    """nodetap_tls_processes{library,state}."""
    g = GaugeMetricFamily(
        "nodetap_tls_processes",
        "Targeted processes using a TLS library, by library and whether it is hooked",
        labels=["library", "state"],
    )
    for (library, state), n in sorted((cov.counts() if cov is not None else {}).items()):
        g.add_metric([library, state], n)
    return g


def kernel_set(table: Any, config_on: bool) -> set[int] | None:
    """The keys of a filter map (filter_pids, filter_cgroups) when its filter is on."""
    if not config_on:
        return None
    return {int(k.value) for k in table}


def drain(table: Any) -> list[int]:
    """The keys of a BPF hash (tls_execs), removed from it."""
    keys = list(table.keys())
    for k in keys:
        with contextlib.suppress(KeyError):
            del table[k]
    return [int(k.value) for k in keys]


def drain_deque(q: deque[int]) -> list[int]:
    """What another thread appended to q, taken out of it (popleft is thread-safe)."""
    out = []
    with contextlib.suppress(IndexError):
        while True:
            out.append(q.popleft())
    return out


def for_capture(cap: Any) -> TlsCoverage:
    """The TLS coverage of a started SyscallCapture (its probes loaded with TLS on),
    rescanning in a thread of its own."""
    from agent import bpf_layout as L
    from agent.loader import find_tracefs
    from agent.tls import stale_probes

    stale_probes.sweep(find_tracefs())  # what killed captures left: before adding our own
    probes = cap.probes
    config = probes.table("config")
    opened: deque[int] = deque(maxlen=MAX_YOUNG * 8)
    cap.opened_tgids = opened

    def on(idx: int) -> bool:
        return bool(config[ctypes.c_int(idx)].value)

    cov = TlsCoverage(
        probes.bpf,
        ports=cap.cfg.ports,
        pid_filter=lambda: kernel_set(probes.table("filter_pids"), on(L.NT_CFG_FILTER_PIDS)),
        cgroup_filter=lambda: kernel_set(
            probes.table("filter_cgroups"), on(L.NT_CFG_FILTER_CGROUPS)
        ),
        tracked=lambda: {c.tgid for c in cap.tracker},
        interval=cap.cfg.tls_rescan_interval,
        execs=lambda: drain(probes.table("tls_execs")),
        opened=lambda: drain_deque(opened),
    )
    cov.start()
    return cov
