"""Give back the memory that compiling the BPF programs left in the agent's process.

BCC compiles the programs with clang and LLVM inside this process, once, at start. What
that leaves for the agent's whole life: about 20 MiB of freed heap that glibc keeps, and
about 80 MiB of LLVM's and clang's code pages, read-only file pages that are touched once
and counted in the agent's resident memory (and charged to its cgroup) until the kernel
reclaims them. Both are released here: malloc_trim for the heap, madvise(MADV_PAGEOUT) on
the compiler libraries' read-only mappings (the kernel drops clean file pages; they are
read again from the file should the compiler run again). Nothing here can change what the
process computes: a page paged out is the same page when it faults back in.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging

log = logging.getLogger(__name__)

MADV_PAGEOUT = 21  # Linux 5.4
# the libraries that only the compile uses
_COMPILER_LIBS = ("libLLVM", "libclang")


def compiler_mappings(maps: str) -> list[tuple[int, int]]:
    """(start, length) of the read-only mappings of the compiler libraries, from the text
    of /proc/self/maps."""
    out = []
    for line in maps.splitlines():
        fields = line.split(None, 5)
        if len(fields) < 6 or "w" in fields[1]:
            continue
        name = fields[5].rsplit("/", 1)[-1]
        if not name.startswith(_COMPILER_LIBS):
            continue
        lo, hi = (int(x, 16) for x in fields[0].split("-"))
        out.append((lo, hi - lo))
    return out


def release_compiler_memory() -> None:
    """Heap back to the kernel; the compiler libraries' pages paged out (best effort)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return
    with contextlib.suppress(AttributeError):
        libc.malloc_trim(0)
    try:
        with open("/proc/self/maps") as f:
            spans = compiler_mappings(f.read())
    except OSError:
        return
    libc.madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    for start, length in spans:
        if libc.madvise(start, length, MADV_PAGEOUT) != 0:  # an older kernel: EINVAL
            log.debug("madvise(MADV_PAGEOUT) failed: errno %d", ctypes.get_errno())
            return
