"""cgroup path formats of real nodes -> container id, runtime and pod uid."""

from __future__ import annotations

import os

import pytest

from agent.enrich import cgroup as cg

CID = "3f1c9a7e2b5d48c6a0e9f7d1b2c3a4e5f60718293a4b5c6d7e8f90a1b2c3d4e5"
UID = "7e9a2b8c-3c1f-4d5e-9a6b-1c2d3e4f5a6b"
UID_ = UID.replace("-", "_")

CASES = [
    # containerd, cgroupfs driver (cgroup v1, as in /proc/PID/cgroup of a pod on such a node)
    (f"/kubepods/burstable/pod{UID}/{CID}", "cri", UID),
    # containerd, systemd driver, cgroup v2
    (
        f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/"
        f"cri-containerd-{CID}.scope",
        "containerd",
        UID,
    ),
    # Guaranteed QoS pods sit directly under kubepods.slice
    (f"/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{CID}.scope", "containerd", UID),
    # kind / nested kubelet.slice
    (
        "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/"
        f"kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{CID}.scope",
        "containerd",
        UID,
    ),
    # containerd with the systemd-style path under cgroupfs
    (f"/kubepods-besteffort-pod{UID_}.slice:cri-containerd:{CID}", "containerd", UID),
    # CRI-O, cgroup v2
    (
        f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/"
        f"crio-{CID}.scope",
        "cri-o",
        UID,
    ),
    # Docker: standalone (v1 cgroupfs), systemd (v2), and dockershim under kubepods
    (f"/docker/{CID}", "docker", None),
    (f"/system.slice/docker-{CID}.scope", "docker", None),
    (
        f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/"
        f"docker-{CID}.scope",
        "docker",
        UID,
    ),
    # podman
    (
        f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{CID}.scope",
        "podman",
        None,
    ),
]


@pytest.mark.parametrize(("path", "runtime", "pod_uid"), CASES)
def test_container_from_path(path: str, runtime: str, pod_uid: str | None) -> None:
    ref = cg.container_from_path(path)
    assert ref is not None
    assert ref.container_id == CID
    assert ref.runtime == runtime
    assert ref.pod_uid == pod_uid


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "",
        "/system.slice/sshd.service",
        "/user.slice/user-1000.slice/session-3.scope",
        f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/"
        f"crio-conmon-{CID}.scope",
    ],
)
def test_host_paths_and_conmon_have_no_container(path: str) -> None:
    assert cg.container_from_path(path) is None


def test_pod_level_cgroup_has_pod_uid_but_no_container() -> None:
    path = f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice"
    assert cg.pod_uid_from_path(path) == UID
    assert cg.container_from_path(path) is None


def test_parse_proc_cgroup_v1_and_hybrid() -> None:
    v1 = (
        f"12:pids:/kubepods/besteffort/pod{UID}/{CID}\n"
        f"11:cpu,cpuacct:/kubepods/besteffort/pod{UID}/{CID}\n"
        f"1:name=systemd:/kubepods/besteffort/pod{UID}/{CID}\n"
    )
    parsed = cg.parse_proc_cgroup(v1)
    assert parsed.v2 is None
    assert parsed.v1["cpu"] == parsed.v1["cpu,cpuacct"]
    assert parsed.best_path() == f"/kubepods/besteffort/pod{UID}/{CID}"
    # hybrid: the v2 line is "/" (nothing there), a v1 line names the container
    hybrid = f"4:memory:/docker/{CID}\n0::/\n"
    assert cg.parse_proc_cgroup(hybrid).best_path() == f"/docker/{CID}"
    v2 = f"0::/system.slice/docker-{CID}.scope\n"
    assert cg.parse_proc_cgroup(v2).best_path() == f"/system.slice/docker-{CID}.scope"


def test_strip_runtime_prefix() -> None:
    assert cg.strip_runtime_prefix(f"containerd://{CID}") == (CID, "containerd")
    assert cg.strip_runtime_prefix(f"cri-o://{CID}") == (CID, "cri-o")
    assert cg.strip_runtime_prefix(f"docker://{CID}") == (CID, "docker")
    assert cg.strip_runtime_prefix(CID) == (CID, "")


def test_this_machine_cgroup2_mount_and_id() -> None:
    mount = cg.find_cgroup2_mount()
    assert mount is not None and (mount / "cgroup.procs").exists()
    assert cg.cgroup_id(mount) == os.stat(mount).st_ino
    own = cg.read_proc_cgroup(os.getpid())
    assert own is not None and own.v2 is not None


def test_find_cgroup2_mount_prefers_unified_layouts(tmp_path: os.PathLike[str]) -> None:
    mounts = os.path.join(tmp_path, "mounts")
    with open(mounts, "w") as f:
        f.write("cgroup /sys/fs/cgroup/cpu cgroup rw 0 0\n")
        f.write("cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n")
    assert str(cg.find_cgroup2_mount(mounts)) == "/sys/fs/cgroup/unified"
    with open(mounts, "w") as f:
        f.write("cgroup2 /sys/fs/cgroup cgroup2 rw,nsdelegate 0 0\n")
    assert str(cg.find_cgroup2_mount(mounts)) == "/sys/fs/cgroup"
    with open(mounts, "w") as f:
        f.write("proc /proc proc rw 0 0\n")
    assert cg.find_cgroup2_mount(mounts) is None
