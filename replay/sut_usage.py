"""The service under test's CPU and memory during a replay, from its cgroup.

CPU time: cgroup v1 ``cpuacct.usage`` (ns) or v2 ``cpu.stat`` usage_usec; memory: v1
``memory.usage_in_bytes`` or v2 ``memory.current``, sampled every half second (the largest
reading is the peak during the run). The cgroup is the one of the pid given; when other
processes share it (outside the service's process tree), the report says so: the numbers are
theirs too.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

SAMPLE_S = 0.5


def _mounts() -> dict[str, str]:
    """'cpuacct' / 'memory' (v1) or '' (v2) -> mount point."""
    out: dict[str, str] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            r = right.split()
            if not r:
                continue
            if r[0] == "cgroup2":
                out.setdefault("", left.split()[4])
            elif r[0] == "cgroup":
                for o in r[-1].split(","):
                    if o in ("cpuacct", "memory"):
                        out.setdefault(o, left.split()[4])
    return out


def _paths(pid: int) -> dict[str, str]:
    """controller ('cpuacct', 'memory', '' for v2) -> cgroup path of pid."""
    out: dict[str, str] = {}
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            for c in ctrls.split(",") if ctrls else [""]:
                out[c] = path
    return out


def _read_int(p: Path, key: str | None = None) -> int | None:
    try:
        text = p.read_text()
    except OSError:
        return None
    if key is None:
        return int(text.strip())
    for line in text.splitlines():
        k, _, v = line.partition(" ")
        if k == key:
            return int(v)
    return None


class SutUsage:
    """Samples a cgroup's CPU time and memory on a thread between start() and stop()."""

    def __init__(self, pid: int, pids: set[int] | None = None) -> None:
        self.pid = pid
        self.pids = pids or {pid}
        mounts, paths = _mounts(), _paths(pid)
        self.cpu_file: tuple[Path, str | None, float] | None = None  # file, key, seconds/unit
        self.mem_file: Path | None = None
        self.cgroup = ""
        if "cpuacct" in mounts and "cpuacct" in paths:
            d = Path(mounts["cpuacct"]) / paths["cpuacct"].lstrip("/")
            self.cpu_file, self.cgroup = (d / "cpuacct.usage", None, 1e-9), paths["cpuacct"]
        elif "" in mounts and "" in paths:
            d = Path(mounts[""]) / paths[""].lstrip("/")
            self.cpu_file, self.cgroup = (d / "cpu.stat", "usage_usec", 1e-6), paths[""]
        if "memory" in mounts and "memory" in paths:
            self.mem_file = Path(mounts["memory"]) / paths["memory"].lstrip("/")
            self.mem_file /= "memory.usage_in_bytes"
        elif "" in mounts and "" in paths:
            self.mem_file = Path(mounts[""]) / paths[""].lstrip("/") / "memory.current"
        self.procs_dir = self.cpu_file[0].parent if self.cpu_file else None
        self.timeline: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sut-usage", daemon=True)
        self.t0 = 0.0

    def _cpu_s(self) -> float | None:
        if self.cpu_file is None:
            return None
        v = _read_int(self.cpu_file[0], self.cpu_file[1])
        return v * self.cpu_file[2] if v is not None else None

    def _mem(self) -> int | None:
        return _read_int(self.mem_file) if self.mem_file is not None else None

    def _sample(self) -> None:
        self.timeline.append(
            {"t": round(time.monotonic() - self.t0, 2), "cpu_s": self._cpu_s(), "mem": self._mem()}
        )

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S):
            self._sample()

    def start(self) -> SutUsage:
        self.t0 = time.monotonic()
        self._sample()
        self._thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sample()
        return self.summary()

    def _sharing(self) -> int:
        if self.procs_dir is None:
            return 0
        try:
            procs = {int(x) for x in (self.procs_dir / "cgroup.procs").read_text().split()}
        except OSError:
            return 0
        return len(procs - self.pids)

    def summary(self) -> dict[str, Any]:
        first, last = self.timeline[0], self.timeline[-1]
        elapsed = max(1e-9, last["t"] - first["t"])
        cpu = (
            last["cpu_s"] - first["cpu_s"]
            if first["cpu_s"] is not None and last["cpu_s"] is not None
            else None
        )
        mems = [s["mem"] for s in self.timeline if s["mem"] is not None]
        others = self._sharing()
        out: dict[str, Any] = {
            "pid": self.pid,
            "cgroup": self.cgroup,
            "cpu_s": round(cpu, 4) if cpu is not None else None,
            "cpu_cores_avg": round(cpu / elapsed, 4) if cpu is not None else None,
            "memory_bytes_max": max(mems) if mems else None,
            "memory_bytes_start": first["mem"],
            "memory_bytes_end": last["mem"],
            "other_processes_in_cgroup": others,
            "timeline": [
                {
                    "t": s["t"],
                    "cpu_s": round(s["cpu_s"] - first["cpu_s"], 4)
                    if s["cpu_s"] is not None and first["cpu_s"] is not None
                    else None,
                    "mem": s["mem"],
                }
                for s in self.timeline[-600:]
            ],
        }
        if cpu is None:
            out["reason"] = "no CPU accounting file for the cgroup (cpuacct or cgroup v2 cpu.stat)"
        if others:
            out["note"] = (
                f"{others} other processes share cgroup {self.cgroup}: the numbers are theirs too"
            )
        return out
