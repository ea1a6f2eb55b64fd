"""The files a process maps (/proc/PID/maps), and the TLS libraries among them (sans-IO
parsing; ``read_maps`` does the reading)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

# libssl.so.3, libssl.so.1.1, libssl.so (BoringSSL's is libssl.so too)
_LIBSSL = re.compile(r"/libssl\.so(\.[0-9.]+)?$")


@dataclass(frozen=True)
class MappedFile:
    path: str  # as the process sees it (inside its mount namespace)
    dev: str  # "fd:01", as /proc/PID/maps writes it
    inode: int


def parse_maps(text: str) -> list[MappedFile]:
    """The distinct files of a /proc/PID/maps text, in order of first appearance."""
    out: dict[tuple[str, int, str], MappedFile] = {}
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 6 or not parts[5].startswith("/"):
            continue
        inode = int(parts[4])
        if not inode:
            continue
        path = parts[5].removesuffix(" (deleted)")
        key = (parts[3], inode, path)
        if key not in out:
            out[key] = MappedFile(path=path, dev=parts[3], inode=inode)
    return list(out.values())


def is_libssl(path: str) -> bool:
    return _LIBSSL.search(path) is not None


def read_maps(pid: int) -> list[MappedFile] | None:
    """The files pid maps; None when the process is gone or unreadable."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            return parse_maps(f.read())
    except OSError:
        return None


def host_path(pid: int, path: str) -> str:
    """A path of pid's mount namespace as this process can open it (containers)."""
    return f"/proc/{pid}/root{path}" if pid != os.getpid() else path
