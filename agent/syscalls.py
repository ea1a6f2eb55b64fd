"""The syscalls the capture programs follow: their numbers and their handlers.

bpf/syscall_dispatch.c calls a handler by syscall number from two raw tracepoints; the
loader puts each handler program at its syscall's number in the dispatch arrays. Syscall
numbers are part of each architecture's ABI and never change, so they are listed here
(tests/agent/test_syscalls.py checks them against the C library's <asm/unistd.h>).
"""

from __future__ import annotations

import platform

# syscall -> (entry handler, exit handler or None): functions in bpf/*.c
HANDLERS: dict[str, tuple[str, str | None]] = {
    "read": ("nt_enter_read", "nt_exit_io"),
    "write": ("nt_enter_write", "nt_exit_io"),
    "readv": ("nt_enter_readv", "nt_exit_io"),
    "writev": ("nt_enter_writev", "nt_exit_io"),
    "recvfrom": ("nt_enter_recvfrom", "nt_exit_io"),
    "sendto": ("nt_enter_sendto", "nt_exit_io"),
    "recvmsg": ("nt_enter_recvmsg", "nt_exit_io"),
    "sendmsg": ("nt_enter_sendmsg", "nt_exit_io"),
    "sendfile": ("nt_enter_sendfile", "nt_exit_io"),
    "sendmmsg": ("nt_enter_sendmmsg", None),
    "recvmmsg": ("nt_enter_recvmmsg", None),
    "accept": ("nt_enter_accept", "nt_exit_accept"),
    "accept4": ("nt_enter_accept", "nt_exit_accept"),
    "connect": ("nt_enter_connect", "nt_exit_connect"),
    "close": ("nt_enter_close", None),
}

# __NR_<name> by `platform.machine()` (sendfile is __NR_sendfile on both: sendfile64
# is the 32-bit name)
NUMBERS: dict[str, dict[str, int]] = {
    "x86_64": {
        "read": 0,
        "write": 1,
        "close": 3,
        "readv": 19,
        "writev": 20,
        "sendfile": 40,
        "connect": 42,
        "accept": 43,
        "sendto": 44,
        "recvfrom": 45,
        "sendmsg": 46,
        "recvmsg": 47,
        "accept4": 288,
        "recvmmsg": 299,
        "sendmmsg": 307,
    },
    "aarch64": {
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
    },
}

# the raw tracepoints the dispatch attaches to, and the one classic tracepoint
TRACEPOINTS = ("raw_syscalls:sys_enter", "raw_syscalls:sys_exit", "sock:inet_sock_set_state")


def numbers(machine: str | None = None) -> dict[str, int]:
    """The syscall numbers of this machine's architecture (KeyError: not supported)."""
    return NUMBERS[machine or platform.machine()]
