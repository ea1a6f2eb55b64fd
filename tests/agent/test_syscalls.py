"""The syscall table the dispatch is filled from agrees with the C library's headers and
with the handlers in bpf/."""

from __future__ import annotations

import platform
import re
import subprocess

import pytest

from agent import loader, syscalls


def _header_numbers() -> dict[str, int]:
    out = subprocess.run(
        ["gcc", "-dM", "-E", "-"],
        input="#include <asm/unistd.h>\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {m[1]: int(m[2]) for m in re.finditer(r"#define __NR_(\w+) (\d+)\n", out)}


def test_numbers_match_asm_unistd() -> None:
    machine = platform.machine()
    if machine not in syscalls.NUMBERS:
        pytest.fail(f"no syscall table for {machine}")
    header = _header_numbers()
    table = syscalls.numbers()
    assert table == {name: header[name] for name in table}
    # every handled syscall this architecture has is numbered (arm64 has no dup2)
    assert set(table) == {name for name in syscalls.HANDLERS if name in header}
    assert syscalls.followed() == sorted(table)


def test_every_handler_is_in_the_programs() -> None:
    text = loader.program_text()
    for name, (entry, exit_) in syscalls.HANDLERS.items():
        assert entry or exit_, name
        if entry:
            category, event = entry.split(":")
            assert f"TRACEPOINT_PROBE({category}, {event})" in text, name
        if exit_:
            assert f"NT_EXIT({exit_.removeprefix('nt_exit_')})" in text, name
    # every numbered slot fits the dispatch array
    limit = int(re.search(r"#define NT_MAX_SYSCALL_NR (\d+)", text).group(1))  # type: ignore[union-attr]
    for table in syscalls.NUMBERS.values():
        assert max(table.values()) < limit
    # no program on syscall entry but the per-syscall ones: every syscall would pay for it
    assert "RAW_TRACEPOINT_PROBE(sys_enter)" not in text
