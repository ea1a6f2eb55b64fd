"""BTF-typed raw tracepoint programs (agent/btf_tracepoint.py) and the loader's choice."""

from __future__ import annotations

import ctypes
import logging
import os
import platform

import pytest

from agent import btf_tracepoint, loader
from nodetap.errors import NodetapError

X86 = platform.machine() == "x86_64"


def test_prog_load_attr_has_the_uapi_offsets() -> None:
    """union bpf_attr's BPF_PROG_LOAD fields, as include/uapi/linux/bpf.h places them."""
    a = btf_tracepoint._ProgLoad
    offsets = {name: getattr(a, name).offset for name, *_ in a._fields_}
    assert offsets["insns"] == 8
    assert offsets["log_buf"] == 32
    assert offsets["prog_name"] == 48
    assert offsets["expected_attach_type"] == 68
    assert offsets["func_info"] == 80
    assert offsets["line_info"] == 96
    assert offsets["attach_btf_id"] == 108
    assert ctypes.sizeof(btf_tracepoint._RawTpOpen) == 16


@pytest.mark.skipif(not X86, reason="typed register reads are x86-64 only")
def test_this_kernel_has_the_btf_of_sys_exit() -> None:
    """This kind of machine (x86-64) has kernel BTF: capture uses it (README: how the syscall
    capture works)."""
    btf_id = btf_tracepoint.raw_tp_btf_id("sys_exit")
    assert btf_id is not None and btf_id > 0
    assert loader.sys_exit_btf_id(loader.LoadOptions()) == btf_id
    assert loader.sys_exit_btf_id(loader.LoadOptions(typed_regs=False)) is None


def test_unknown_tracepoint_has_no_btf_id() -> None:
    assert btf_tracepoint.raw_tp_btf_id("nodetap_no_such_tracepoint") is None


@pytest.mark.bpf
@pytest.mark.root
@pytest.mark.skipif(not X86, reason="typed register reads are x86-64 only")
def test_typed_load_refused_falls_back_to_probe_reads(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(bpf: object, name: str, btf_id: int) -> int:
        raise OSError(22, f"{name}: Invalid argument: invalid access")

    monkeypatch.setattr(btf_tracepoint, "load", refuse)
    with caplog.at_level(logging.WARNING, logger="agent.loader"):
        probes = loader.load(loader.LoadOptions())
    try:
        assert probes.typed_regs is False
        assert "raw_syscalls:sys_exit" in probes.tracepoints
        assert probes.fds == []
    finally:
        probes.close()
    assert "probe reads of the registers" in caplog.text
    # asked for typed reads explicitly: no fallback, one clear error
    with pytest.raises(NodetapError, match="failed to load: nt_"):
        loader.load(loader.LoadOptions(typed_regs=True))


@pytest.mark.bpf
@pytest.mark.root
@pytest.mark.skipif(not X86, reason="typed register reads are x86-64 only")
def test_typed_programs_are_detached_on_close() -> None:
    probes = loader.load(loader.LoadOptions(typed_regs=True))
    fds = list(probes.fds)
    assert probes.typed_regs and fds
    probes.close()
    for fd in fds:  # links and programs closed: nothing of ours stays attached
        with pytest.raises(OSError):
            os.fstat(fd)
