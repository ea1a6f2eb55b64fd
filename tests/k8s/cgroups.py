"""Real cgroup v2 directories laid out like a kubelet's, for tests (removed afterwards)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from agent.enrich.cgroup import find_cgroup2_mount

# A process that makes N getppid() calls for each number it reads, then answers "done".
_WORKER = (
    "import os, sys\n"
    "for line in sys.stdin:\n"
    "    for _ in range(int(line)):\n"
    "        os.getppid()\n"
    "    print('done', flush=True)\n"
)


@dataclass
class FakePod:
    uid: str
    container_id: str
    pod_dir: Path
    scope: Path
    proc: subprocess.Popen[str]

    def run(self, calls: int) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"{calls}\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == "done"


def _join(scope: Path) -> None:
    (scope / "cgroup.procs").write_text("0\n")


def _rmtree_cgroups(top: Path) -> None:
    # cgroup directories are removed with rmdir, deepest first (their files cannot be deleted)
    for dirpath, _dirs, _files in sorted(os.walk(top), key=lambda t: -t[0].count("/")):
        for _ in range(50):
            try:
                os.rmdir(dirpath)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.05)  # a killed process leaves its cgroup a moment later


@contextmanager
def kubelet_cgroups(n: int) -> Iterator[tuple[Path, list[FakePod]]]:
    """``n`` pods under <cgroup2>/nodetap-test-*/kubepods.slice/..., one process in each
    container scope. Yields (the test's cgroup root, pods); kills and removes everything."""
    mount = find_cgroup2_mount()
    if mount is None:
        raise RuntimeError("no cgroup v2 mount")
    # "kube" in the name: the targeting scan descends into it as into a kubelet's tree
    top = mount / f"nodetap-test-kube-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    pods: list[FakePod] = []
    try:
        qos = top / "kubepods.slice" / "kubepods-besteffort.slice"
        qos.mkdir(parents=True)
        for _ in range(n):
            uid = str(uuid.uuid4())
            cid = uuid.uuid4().hex + uuid.uuid4().hex
            pod_dir = qos / f"kubepods-besteffort-pod{uid.replace('-', '_')}.slice"
            scope = pod_dir / f"cri-containerd-{cid}.scope"
            scope.mkdir(parents=True)
            proc = subprocess.Popen(
                [sys.executable, "-c", _WORKER],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                preexec_fn=lambda s=scope: _join(s),  # type: ignore[misc]
            )
            pods.append(FakePod(uid, cid, pod_dir, scope, proc))
        yield top, pods
    finally:
        for p in pods:
            if p.proc.poll() is None:
                os.kill(p.proc.pid, signal.SIGKILL)
            p.proc.wait(5)
        if top.exists():
            _rmtree_cgroups(top)
        if top.exists():  # pragma: no cover - leave a clue rather than a silent leak
            shutil.rmtree(top, ignore_errors=True)
