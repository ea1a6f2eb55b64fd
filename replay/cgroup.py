"""CPU throttling of this process's cgroup, from cpu.stat (cgroup v1 and v2).

v2: ``0::/path`` in /proc/self/cgroup, /sys/fs/cgroup/path/cpu.stat has nr_periods,
nr_throttled, throttled_usec. v1: the ``cpu`` (or ``cpu,cpuacct``) hierarchy's cpu.stat has
nr_periods, nr_throttled, throttled_time (ns). On hybrid hosts the v1 cpu controller wins.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(slots=True)
class CpuSample:
    t: float
    nr_periods: int
    nr_throttled: int
    throttled_s: float


def _mounts() -> dict[str, tuple[Path, str]]:
    """controller name (or '' for v2) -> (mount point, root of the hierarchy it shows)."""
    out: dict[str, tuple[Path, str]] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rfields = left.split(), right.split()
            if not rfields:
                continue
            fstype, opts = rfields[0], rfields[-1].split(",")
            if fstype == "cgroup2":
                out.setdefault("", (Path(fields[4]), fields[3]))
            elif fstype == "cgroup":
                for o in opts:
                    if o in ("cpu", "cpuacct"):
                        out.setdefault(o, (Path(fields[4]), fields[3]))
    return out


def _join(mount: tuple[Path, str], path: str) -> Path:
    base, root = mount
    if root != "/" and path.startswith(root):
        path = path[len(root) :]  # a container sees its own cgroup as the mount's root
    return base / path.lstrip("/") / "cpu.stat"


def cpu_stat_path(pid: int | str = "self") -> tuple[Path | None, str]:
    """The cpu.stat file of pid's cgroup and the version ('v1'/'v2'); (None, '') if none."""
    mounts = _mounts()
    v1 = v2 = None
    with open(f"/proc/{pid}/cgroup") as f:
        for line in f:
            _, ctrls, path = line.rstrip("\n").split(":", 2)
            if "cpu" in ctrls.split(",") and "cpu" in mounts:
                v1 = _join(mounts["cpu"], path)
            elif ctrls == "" and "" in mounts:
                v2 = _join(mounts[""], path)
    if v1 is not None and v1.exists():
        return v1, "v1"
    if v2 is not None and v2.exists():
        return v2, "v2"
    return None, ""


class CpuThrottleMonitor:
    """Reads the cpu.stat of the cgroup this process is in (children inherit it)."""

    def __init__(self, pid: int | str = "self") -> None:
        self.path, self.version = cpu_stat_path(pid)
        self.cgroup = str(self.path.parent) if self.path else ""

    def sample(self) -> CpuSample | None:
        if self.path is None:
            return None
        try:
            kv = dict(line.split() for line in self.path.read_text().splitlines() if line)
        except OSError:
            return None
        if "throttled_usec" in kv:
            thr = int(kv["throttled_usec"]) / 1e6
        else:
            thr = int(kv.get("throttled_time", 0)) / 1e9
        return CpuSample(
            t=time.time(),
            nr_periods=int(kv.get("nr_periods", 0)),
            nr_throttled=int(kv.get("nr_throttled", 0)),
            throttled_s=thr,
        )


def quota(pid: int | str = "self") -> str:
    """The CPU quota of pid's cgroup as text ('max' when unlimited), for the report."""
    path, ver = cpu_stat_path(pid)
    if path is None:
        return "unknown"
    d = path.parent
    try:
        if ver == "v2":
            return (d / "cpu.max").read_text().strip()
        q = int((d / "cpu.cfs_quota_us").read_text())
        p = int((d / "cpu.cfs_period_us").read_text())
        return "max" if q < 0 else f"{q} {p}"
    except OSError:
        return "unknown"


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and its waited-for children."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system
