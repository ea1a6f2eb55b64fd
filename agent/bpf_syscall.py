"""The bpf(2) syscall through ctypes, for the calls BCC does not make for nodetap (loading
BTF-typed programs: agent.btf_tracepoint), and the number of possible CPUs, which sizes
per-CPU data."""

from __future__ import annotations

import ctypes
import os
import platform

_NR_BPF = {"x86_64": 321, "aarch64": 280}
_libc = ctypes.CDLL(None, use_errno=True)


def bpf(cmd: int, attr: ctypes.Structure) -> int:
    """bpf(cmd, &attr, sizeof(attr)); its non-negative result, or OSError."""
    nr = _NR_BPF.get(platform.machine())
    if nr is None:
        raise OSError(f"no bpf(2) syscall number known for {platform.machine()}")
    ret = int(_libc.syscall(nr, cmd, ctypes.byref(attr), ctypes.sizeof(attr)))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return ret


def possible_cpus(text: str | None = None) -> int:
    """How many CPUs a per-CPU map has values for: the kernel's possible CPUs
    (/sys/devices/system/cpu/possible, such as "0-3" or "0,2-5")."""
    if text is None:
        with open("/sys/devices/system/cpu/possible") as f:
            text = f.read()
    last = 0
    for part in text.strip().split(","):
        last = max(last, int(part.split("-")[-1]))
    return last + 1
