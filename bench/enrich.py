"""What enrichment costs per new connection: Enricher.enrich(pid) against the obvious
alternative, reading and parsing /proc/PID/cgroup and /proc/PID/comm on every call.

Processes stand in for pods: N sleepers in the current cgroup and pod objects (kubernetes
client models) in the index. Prints microseconds per call for each, and the ratio.

    .venv/bin/python bench/enrich.py [--pids 50] [--calls 20000]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.enrich import Enricher, PodIndex
from agent.enrich.cgroup import container_from_path, parse_proc_cgroup


def naive(pid: int) -> tuple[str, str]:
    with open(f"/proc/{pid}/cgroup") as f:
        path = parse_proc_cgroup(f.read()).best_path() or ""
    with open(f"/proc/{pid}/comm") as f:
        comm = f.read().strip()
    ref = container_from_path(path)
    return comm, ref.container_id if ref else ""


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--pids", type=int, default=50)
    ap.add_argument("--calls", type=int, default=20000)
    args = ap.parse_args()
    procs = [subprocess.Popen(["sleep", "120"]) for _ in range(args.pids)]
    try:
        pids = [p.pid for p in procs]
        enricher = Enricher(PodIndex(), node="bench")
        results = {}
        for name, fn in (("naive", naive), ("enricher", enricher.enrich)):
            for pid in pids:  # warm
                fn(pid)
            t0 = time.perf_counter()
            for i in range(args.calls):
                fn(pids[i % len(pids)])
            results[name] = (time.perf_counter() - t0) / args.calls * 1e6
        print(f"naive /proc read+parse: {results['naive']:.2f} us/call")
        print(f"Enricher.enrich (cached): {results['enricher']:.2f} us/call")
        print(f"ratio enricher/naive: {results['enricher'] / results['naive']:.2f}")
    finally:
        for p in procs:
            p.kill()
            p.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
