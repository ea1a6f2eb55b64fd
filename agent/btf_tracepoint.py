"""Load BCC-compiled functions as BTF-typed raw tracepoint programs ("tp_btf"), and attach.

A plain raw tracepoint program gets the tracepoint's arguments as untyped integers: to
read the syscall's saved registers through `struct pt_regs *` it must call
bpf_probe_read_kernel, ~50 ns a call on this kind of machine, twice per syscall exit of
a traced process. A tp_btf program is the same program loaded with the kernel's BTF id
of the tracepoint (`btf_trace_<name>`): the verifier then knows the argument is a
`struct pt_regs *` and allows plain loads from it, checked against the kernel's BTF
(bpf/common.h, NT_TYPED_REGS). Nothing else changes: the same raw tracepoint, the same
program text.

BCC 0.26 can load a tracing program only for fentry/fexit/LSM names, so the program is
loaded here with the bpf(2) syscall (agent.bpf_syscall), from the instructions BCC
compiled (its maps' fds are already in them). The BTF id comes from libbpf (libbpf1, a
dependency of BCC's library). Both are stable interfaces: union bpf_attr's BPF_PROG_LOAD
and BPF_RAW_TRACEPOINT_OPEN fields, and libbpf_find_vmlinux_btf_id.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
from typing import Any

from agent import bpf_syscall

log = logging.getLogger(__name__)

BPF_PROG_LOAD = 5
BPF_RAW_TRACEPOINT_OPEN = 17
BPF_PROG_TYPE_TRACING = 26
BPF_TRACE_RAW_TP = 23
_LOG_SIZE = 1 << 20


class _ProgLoad(ctypes.Structure):
    """union bpf_attr, BPF_PROG_LOAD (include/uapi/linux/bpf.h), up to attach_btf_id,
    padded: the kernel requires the bytes after the fields it knows to be zero."""

    _fields_ = [
        ("prog_type", ctypes.c_uint32),
        ("insn_cnt", ctypes.c_uint32),
        ("insns", ctypes.c_uint64),
        ("license", ctypes.c_uint64),
        ("log_level", ctypes.c_uint32),
        ("log_size", ctypes.c_uint32),
        ("log_buf", ctypes.c_uint64),
        ("kern_version", ctypes.c_uint32),
        ("prog_flags", ctypes.c_uint32),
        ("prog_name", ctypes.c_char * 16),
        ("prog_ifindex", ctypes.c_uint32),
        ("expected_attach_type", ctypes.c_uint32),
        ("prog_btf_fd", ctypes.c_uint32),
        ("func_info_rec_size", ctypes.c_uint32),
        ("func_info", ctypes.c_uint64),
        ("func_info_cnt", ctypes.c_uint32),
        ("line_info_rec_size", ctypes.c_uint32),
        ("line_info", ctypes.c_uint64),
        ("line_info_cnt", ctypes.c_uint32),
        ("attach_btf_id", ctypes.c_uint32),
        ("_rest", ctypes.c_uint8 * 64),
    ]


class _RawTpOpen(ctypes.Structure):
    """union bpf_attr, BPF_RAW_TRACEPOINT_OPEN: a null name attaches by the program's
    attach_btf_id."""

    _fields_ = [("name", ctypes.c_uint64), ("prog_fd", ctypes.c_uint32), ("_pad", ctypes.c_uint32)]


def raw_tp_btf_id(tracepoint: str) -> int | None:
    """The kernel BTF id of raw tracepoint `tracepoint` (its btf_trace_ typedef), or None
    when the kernel has no BTF, the tracepoint has none, or libbpf is missing."""
    name = ctypes.util.find_library("bpf") or "libbpf.so.1"
    try:
        libbpf = ctypes.CDLL(name)
        find = libbpf.libbpf_find_vmlinux_btf_id
    except (OSError, AttributeError) as e:
        log.info("no libbpf for BTF lookups (%s): registers are read with probe reads", e)
        return None
    find.argtypes = [ctypes.c_char_p, ctypes.c_int]
    find.restype = ctypes.c_int
    btf_id = int(find(tracepoint.encode(), BPF_TRACE_RAW_TP))
    return btf_id if btf_id > 0 else None


def load(bpf: Any, name: str, btf_id: int) -> int:
    """Load the BCC-compiled function `name` of module `bpf` as a tp_btf program for the
    tracepoint of `btf_id`; return its fd (the caller closes it). OSError with the
    verifier's last words when the kernel refuses it."""
    from bcc import lib

    start = lib.bpf_function_start(bpf.module, name.encode())
    size = int(lib.bpf_function_size(bpf.module, name.encode()))
    if not start or not size:
        raise OSError(f"no compiled BPF function {name}")
    license = ctypes.create_string_buffer(b"GPL")
    log_buf = ctypes.create_string_buffer(_LOG_SIZE)
    attr = _ProgLoad(
        prog_type=BPF_PROG_TYPE_TRACING,
        insn_cnt=size // 8,
        insns=ctypes.cast(start, ctypes.c_void_p).value or 0,
        license=ctypes.addressof(license),
        expected_attach_type=BPF_TRACE_RAW_TP,
        attach_btf_id=btf_id,
    )
    attr.prog_name = name.encode()[:15]
    try:
        return bpf_syscall.bpf(BPF_PROG_LOAD, attr)
    except OSError:
        pass
    # again with the verifier's log, only to say why (a log costs time on success)
    attr.log_level, attr.log_size, attr.log_buf = 1, _LOG_SIZE, ctypes.addressof(log_buf)
    try:
        return bpf_syscall.bpf(BPF_PROG_LOAD, attr)
    except OSError as e:
        lines = log_buf.value.decode(errors="replace").strip().splitlines()
        last = lines[-1] if lines else "no verifier log"
        raise OSError(e.errno, f"{name}: {e.strerror}: {last}") from None


def attach(prog_fd: int) -> int:
    """Attach a tp_btf program to its tracepoint; return the link fd (closing it
    detaches)."""
    return bpf_syscall.bpf(BPF_RAW_TRACEPOINT_OPEN, _RawTpOpen(name=0, prog_fd=prog_fd))
