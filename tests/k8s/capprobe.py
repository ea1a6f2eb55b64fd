"""Run as a child under a reduced capability set: load the cgroup probe, make getppid() calls,
print how many the probe counted for this process's cgroup (or the load error)."""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path


def main() -> int:
    from bcc import BPF

    src = (Path(__file__).parent / "cgroup_probe.c").read_bytes()
    try:
        bpf = BPF(text=src)
    except Exception as e:
        print(f"load failed: {e}", flush=True)
        return 3
    try:
        mine = ctypes.c_uint64(int(sys.argv[1]))
        bpf[b"allowed"][mine] = ctypes.c_uint8(1)
        for _ in range(1000):
            os.getppid()
        counts = {k.value: v.value for k, v in bpf[b"counts"].items()}
        print(f"counted {counts.get(mine.value, 0)}", flush=True)
    finally:
        bpf.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
