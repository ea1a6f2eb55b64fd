"""The syscalls the capture programs follow: their numbers and their handlers.

bpf/syscall_dispatch.c calls an exit handler by syscall number from the raw
`raw_syscalls:sys_exit` tracepoint; the loader puts each handler program at its syscall's
number in the dispatch array. The few syscalls whose entry matters have per-syscall entry
tracepoints of their own (bpf/conn_lifecycle.c). Syscall numbers are part of each
architecture's ABI and never change, so they are listed here
(tests/agent/test_syscalls.py checks them against the C library's <asm/unistd.h>).
"""

from __future__ import annotations

import platform

# syscall -> (entry tracepoint or None, exit handler or None): the handlers are functions
# in bpf/*.c, the entry tracepoints TRACEPOINT_PROBEs there
HANDLERS: dict[str, tuple[str | None, str | None]] = {
    "read": (None, "nt_exit_read"),
    "write": (None, "nt_exit_write"),
    "readv": (None, "nt_exit_readv"),
    "writev": (None, "nt_exit_writev"),
    "recvfrom": (None, "nt_exit_recvfrom"),
    "sendto": (None, "nt_exit_sendto"),
    "recvmsg": (None, "nt_exit_recvmsg"),
    "sendmsg": (None, "nt_exit_sendmsg"),
    "sendfile": (None, "nt_exit_sendfile"),
    "sendmmsg": (None, "nt_exit_sendmmsg"),
    "recvmmsg": (None, "nt_exit_recvmmsg"),
    "accept": ("syscalls:sys_enter_accept", "nt_exit_accept"),
    "accept4": ("syscalls:sys_enter_accept4", "nt_exit_accept"),
    "connect": ("syscalls:sys_enter_connect", "nt_exit_connect"),
    "close": ("syscalls:sys_enter_close", None),
    "dup2": (None, "nt_exit_dup"),
    "dup3": (None, "nt_exit_dup"),
    # the files sendfile may read from (bpf/sendfile_source.c)
    "open": (None, "nt_exit_open"),
    "openat": (None, "nt_exit_openat"),
    "lseek": (None, "nt_exit_lseek"),
}

# __NR_<name> by `platform.machine()` (sendfile is __NR_sendfile on both: sendfile64
# is the 32-bit name; arm64 has no dup2, only dup3)
NUMBERS: dict[str, dict[str, int]] = {
    "x86_64": {
        "read": 0,
        "write": 1,
        "close": 3,
        "readv": 19,
        "writev": 20,
        "dup2": 33,
        "sendfile": 40,
        "connect": 42,
        "accept": 43,
        "sendto": 44,
        "recvfrom": 45,
        "sendmsg": 46,
        "recvmsg": 47,
        "accept4": 288,
        "dup3": 292,
        "recvmmsg": 299,
        "sendmmsg": 307,
        "open": 2,
        "lseek": 8,
        "openat": 257,
    },
    "aarch64": {
        "dup3": 24,
        "close": 57,
        "read": 63,
        "write": 64,
        "readv": 65,
        "writev": 66,
        "sendfile": 71,
        "accept": 202,
        "connect": 203,
        "sendto": 206,
        "recvfrom": 207,
        "sendmsg": 211,
        "recvmsg": 212,
        "accept4": 242,
        "recvmmsg": 243,
        "sendmmsg": 269,
        "openat": 56,
        "lseek": 62,
    },
}

# the syscalls whose number bpf/conn_addr.c compares (-DNT_NR_<NAME>): the reads it takes a
# connection's addresses in, and close
ADDR_READ_SYSCALLS = ("read", "readv", "recvfrom", "recvmsg", "close")

# every tracepoint the programs attach to: the dispatch's raw tracepoint, the entry
# tracepoints, and the TCP state changes
TRACEPOINTS = (
    "raw_syscalls:sys_exit",
    *sorted(entry for entry, _ in HANDLERS.values() if entry),
    "sock:inet_sock_set_state",
)


def numbers(machine: str | None = None) -> dict[str, int]:
    """The syscall numbers of this machine's architecture (KeyError: not supported)."""
    return NUMBERS[machine or platform.machine()]


def followed(machine: str | None = None) -> list[str]:
    """The syscalls followed on this machine's architecture (those it has)."""
    table = numbers(machine)
    return sorted(name for name in HANDLERS if name in table)
