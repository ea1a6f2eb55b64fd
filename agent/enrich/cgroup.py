"""pid -> cgroup path -> container id and pod uid, from /proc and the cgroup tree.

Understands the path formats of the container runtimes Kubernetes nodes run, for cgroup v1
and v2 and both cgroup drivers (cgroupfs and systemd):

- containerd, cgroupfs driver:  /kubepods/burstable/pod<uid>/<id>
- containerd, systemd driver:   /kubepods.slice/kubepods-burstable.slice/
                                 kubepods-burstable-pod<uid_with_underscores>.slice/
                                 cri-containerd-<id>.scope
- CRI-O:                        .../kubepods-besteffort-pod<uid>.slice/crio-<id>.scope
                                (crio-conmon-<id>.scope is the runtime monitor, not the container)
- Docker:                       /docker/<id>, /system.slice/docker-<id>.scope, and under
                                kubepods with dockershim or cri-dockerd
- podman:                       .../libpod-<id>.scope

Plain functions of strings, so they are tested on real path samples without a node.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

# A container id is 64 hex digits in every runtime above.
_ID = r"[0-9a-f]{64}"
_RUNTIME_SCOPE = re.compile(
    rf"(?:^|[/:])(?P<prefix>cri-containerd|crio|docker|libpod|containerd)[-:](?P<id>{_ID})"
    r"(?:\.scope)?$"
)
_CONMON = re.compile(rf"crio-conmon-{_ID}")
_BARE_ID = re.compile(rf"(?:^|/)(?P<id>{_ID})$")
# pod<uid>: the uid has dashes under cgroupfs and underscores under the systemd driver.
_POD_UID = re.compile(
    r"pod(?P<uid>[0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})"
)

_RUNTIME_NAMES = {
    "cri-containerd": "containerd",
    "containerd": "containerd",
    "crio": "cri-o",
    "docker": "docker",
    "libpod": "podman",
}


@dataclass(frozen=True, slots=True)
class ProcCgroups:
    """What /proc/PID/cgroup says: the v2 path and the v1 paths per controller."""

    v2: str | None = None
    v1: dict[str, str] = field(default_factory=dict)

    def best_path(self) -> str | None:
        """The path that identifies the container: v2 if set beyond '/', else a v1 one."""
        if self.v2 not in (None, "/"):
            return self.v2
        for controller in ("pids", "memory", "cpu", "cpu,cpuacct", "name=systemd", "devices"):
            path = self.v1.get(controller)
            if path and path != "/":
                return path
        for path in self.v1.values():
            if path and path != "/":
                return path
        return self.v2


@dataclass(frozen=True, slots=True)
class ContainerRef:
    """A container id found in a cgroup path, and the runtime whose format it had."""

    container_id: str
    runtime: str
    pod_uid: str | None


def parse_proc_cgroup(text: str) -> ProcCgroups:
    """Parse the text of /proc/PID/cgroup ('ID:CONTROLLERS:PATH' lines)."""
    v2: str | None = None
    v1: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hier, controllers, path = parts
        if hier == "0" and controllers == "":
            v2 = path
        else:
            for c in controllers.split(","):
                v1[c] = path
            v1[controllers] = path
    return ProcCgroups(v2=v2, v1=v1)


def read_proc_cgroup(pid: int, proc_root: str = "/proc") -> ProcCgroups | None:
    """The cgroups of a live process; None when it is gone or unreadable."""
    try:
        with open(f"{proc_root}/{pid}/cgroup", encoding="utf-8", errors="replace") as f:
            return parse_proc_cgroup(f.read())
    except OSError:
        return None


def pod_uid_from_path(path: str) -> str | None:
    """The pod uid (with dashes) named in a kubepods cgroup path, if any."""
    if "kubepods" not in path:
        return None
    found = _POD_UID.findall(path)
    return found[-1].replace("_", "-") if found else None  # the innermost pod<uid> wins


def container_from_path(path: str) -> ContainerRef | None:
    """The container id, runtime and pod uid in a cgroup path; None for host processes."""
    if not path or path == "/":
        return None
    leaf = path.rstrip("/").rsplit("/", 1)[-1]
    if _CONMON.search(leaf):
        return None  # CRI-O's conmon runs beside the container, not in it
    pod_uid = pod_uid_from_path(path)
    m = _RUNTIME_SCOPE.search(leaf)
    if m:
        return ContainerRef(m.group("id"), _RUNTIME_NAMES[m.group("prefix")], pod_uid)
    m = _BARE_ID.search(path.rstrip("/"))
    if m:
        # cgroupfs driver: the runtime is not in the path; /docker/<id> is Docker's own.
        runtime = "docker" if "/docker/" in path else ("cri" if pod_uid else "unknown")
        return ContainerRef(m.group("id"), runtime, pod_uid)
    return None


def strip_runtime_prefix(container_id: str) -> tuple[str, str]:
    """'containerd://abc' (a pod status containerID) -> ('abc', 'containerd')."""
    scheme, sep, rest = container_id.partition("://")
    if not sep:
        return container_id, ""
    return rest, {"cri-o": "cri-o", "containerd": "containerd", "docker": "docker"}.get(
        scheme, scheme
    )


def find_cgroup2_mount(mounts_file: str = "/proc/self/mounts") -> Path | None:
    """Where the cgroup v2 hierarchy is mounted: /sys/fs/cgroup (unified) or
    /sys/fs/cgroup/unified (hybrid systems); None when there is none."""
    found: list[Path] = []
    try:
        with open(mounts_file, encoding="utf-8") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[2] == "cgroup2":
                    found.append(Path(parts[1].replace("\\040", " ")))
    except OSError:
        return None
    for preferred in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified")):
        if preferred in found:
            return preferred
    return found[0] if found else None


def cgroup_id(path: str | os.PathLike[str]) -> int:
    """The cgroup v2 id of a cgroup directory: its inode number, which is what
    bpf_get_current_cgroup_id() returns for tasks in it."""
    return os.stat(path).st_ino
