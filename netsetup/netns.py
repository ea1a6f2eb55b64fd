"""Entering a named network namespace (/run/netns/NAME, as made by `ip netns add`)."""

from __future__ import annotations

import ctypes
import os

CLONE_NEWNET = 0x40000000


def enter_netns(name: str) -> None:
    """Move the calling thread (the whole process when it has one thread) into netns NAME."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns {name}: {os.strerror(err)}")
    finally:
        os.close(fd)
