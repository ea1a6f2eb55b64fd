"""The capabilities a syscall capture needs, checked before BCC tries (one clear line instead
of BCC's "Need super-user privileges to run" or "Failed to compile BPF module").

Measured on kernel 6.x by running the real capture with each one dropped
(tests/k8s/test_capabilities.py): CAP_BPF (bpf(): programs and maps) and CAP_PERFMON
(perf_event_open(): tracepoints, uprobes) are needed, CAP_SYS_PTRACE to read other processes'
/proc entries (their sockets, the TLS libraries they map) when they run with capabilities
the agent lacks or as another user; CAP_NET_ADMIN is not (packet mode and netsetup only), nor
CAP_SYS_RESOURCE on kernels from 5.11 (BPF memory is charged to the cgroup, not
RLIMIT_MEMLOCK). Before 5.8 there is no CAP_BPF/CAP_PERFMON: CAP_SYS_ADMIN stands for both.
"""

from __future__ import annotations

from pathlib import Path

CAP_SYS_PTRACE = 19
CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39

NEEDED = {
    CAP_BPF: "CAP_BPF (bpf(): load the programs, create the maps)",
    CAP_PERFMON: "CAP_PERFMON (perf_event_open(): attach the tracepoints and uprobes)",
}
WANTED = {
    CAP_SYS_PTRACE: "CAP_SYS_PTRACE (read other processes' /proc entries: their sockets and "
    "TLS libraries; without it their connections can be missed)",
}


def effective(status: str | None = None) -> int:
    """The effective capability set of this process (CapEff of /proc/self/status)."""
    text = status if status is not None else Path("/proc/self/status").read_text()
    for line in text.splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def missing(caps: int) -> tuple[list[str], list[str]]:
    """(needed capabilities that caps lacks, wanted ones it lacks), described."""
    if caps & (1 << CAP_SYS_ADMIN):
        needed: list[str] = []  # CAP_SYS_ADMIN allows bpf() and perf_event_open() too
    else:
        needed = [d for c, d in NEEDED.items() if not caps & (1 << c)]
    wanted = [d for c, d in WANTED.items() if not caps & (1 << c)]
    return needed, wanted
