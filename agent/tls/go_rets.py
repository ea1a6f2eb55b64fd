"""Where Go's crypto/tls functions return: the offsets of their RET instructions, found by
disassembling the function with binutils' objdump (x86-64). Return values of Go functions
are read there, never with uretprobes (bpf/tls_go.c)."""

from __future__ import annotations

import re
import shutil
import subprocess

_LINE = re.compile(r"^\s*([0-9a-f]+):\s+ret", re.M)
_START = re.compile(r"^([0-9a-f]+) <", re.M)


def ret_offsets_from(disassembly: str) -> tuple[int, ...]:
    """The offsets (from the function's start) of the RET instructions in objdump's
    disassembly of one function (``objdump -d --no-show-raw-insn --disassemble=SYM``)."""
    start = _START.search(disassembly)
    if start is None:
        return ()
    base = int(start.group(1), 16)
    return tuple(int(m.group(1), 16) - base for m in _LINE.finditer(disassembly))


def ret_offsets(path: str, symbol: str) -> tuple[int, ...]:
    """RET offsets of symbol in the executable at path; () when objdump is missing or fails."""
    objdump = shutil.which("objdump")
    if objdump is None:
        return ()
    try:
        out = subprocess.run(
            [objdump, "-d", "--no-show-raw-insn", f"--disassemble={symbol}", path],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    return ret_offsets_from(out)
