"""What the agent gives back after compiling its BPF programs (agent/memory_trim.py)."""

from __future__ import annotations

from agent.memory_trim import compiler_mappings

MAPS = """\
55d0c0a00000-55d0c0a28000 r--p 00000000 fe:00 1 /usr/bin/python3.11
7f1f8d200000-7f1f93162000 r-xp 00000000 fe:00 2 /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1
7f1f93362000-7f1f93363000 r--p 06162000 fe:00 2 /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1
7f1f93363000-7f1f93400000 rw-p 06163000 fe:00 2 /usr/lib/x86_64-linux-gnu/libLLVM-14.so.1
7f1f94000000-7f1f95000000 r-xp 00000000 fe:00 3 /usr/lib/llvm-14/lib/libclang-cpp.so.14
7f1f96000000-7f1f96001000 r-xp 00000000 fe:00 4 /opt/libLLVM-tricks/not-a-compiler.so
7f1f97000000-7f1f97001000 rw-p 00000000 00:00 0
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
"""


def test_only_the_compilers_read_only_mappings_are_chosen() -> None:
    # never a writable mapping (its pages hold relocations and globals), never another file
    assert compiler_mappings(MAPS) == [
        (0x7F1F8D200000, 0x7F1F93162000 - 0x7F1F8D200000),
        (0x7F1F93362000, 0x1000),
        (0x7F1F94000000, 0x1000000),
    ]
