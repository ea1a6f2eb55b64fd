"""Compile and attach nodetap's syscall-capture programs with BCC, and detach them.

Checks first what a node may lack (root, BCC, tracefs, kernel headers, tracepoints) and
turns each into one actionable NodetapError instead of a compiler error or a traceback.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import importlib.resources
import logging
import os
import platform
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent import bpf_layout as L
from agent import btf_tracepoint, syscalls
from agent.bpf_syscall import possible_cpus
from agent.memory_trim import release_compiler_memory
from agent.ring_reserve import ring_reserve
from nodetap.errors import NodetapError

log = logging.getLogger(__name__)

# The C sources are package data of the ``bpf`` package (bpf/__init__.py). BCC needs them as
# files on disk (-I for common.h's #include "nodetap.h"): an installed package is a directory
# already; anything else (a zip) is extracted once, for the life of the process.
_on_disk = contextlib.ExitStack()
atexit.register(_on_disk.close)
BPF_DIR: Path = _on_disk.enter_context(
    importlib.resources.as_file(importlib.resources.files("bpf"))
)
# The capture program, in the order BCC must see it. BCC rewrites map accesses only in
# its main text, so the files are joined into one text rather than #included.
SOURCES = (
    "common.h",
    "sendfile_source.c",
    "conn_lifecycle.c",
    "conn_addr.c",
    "data_io.c",
    "uncopied_io.c",
    "syscall_dispatch.c",
)
# With TLS capture (issue 21): the state the syscall programs share with the uprobes goes
# before data_io.c (which calls it), the uprobes after it (they copy with its helpers).
TLS_SOURCES = {"data_io.c": ("tls_state.c", "data_io.c", "tls_openssl.c", "tls_go.c")}
TRACEFS_CANDIDATES = (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing"))

# Every tracepoint the programs attach to, for the pre-flight check and the report.
TRACEPOINTS = syscalls.TRACEPOINTS
# Where the kernel has it (bpf/conn_addr.c): the addresses of connections accepted without
# a sockaddr, at their first read. Without it the agent falls back (agent/addr_lookup.py).
ADDR_TRACEPOINT = "tcp:tcp_rcv_space_adjust"
_ADDR_FIELDS = ("skaddr", "sport", "dport", "family", "saddr", "daddr", "saddr_v6", "daddr_v6")


@dataclass
class LoadOptions:
    """What the loader needs to know before it compiles."""

    ringbuf_pages: int = 4096  # 16 MiB with 4 KiB pages; a power of two
    max_conns: int = 65536
    # read the syscall registers with plain loads, the programs loaded as BTF-typed raw
    # tracepoints (agent/btf_tracepoint.py): None where the kernel allows it (x86-64
    # with kernel BTF), False never, True or fail
    typed_regs: bool | None = None
    # addresses of accept-without-sockaddr connections at their first read (bpf/conn_addr.c):
    # None where the kernel allows it, False never
    addr_at_read: bool | None = None
    # TLS plaintext through uprobes (bpf/tls_state.c, bpf/tls_openssl.c; agent/tls/)
    tls: bool = False


@dataclass
class Probes:
    """A loaded, attached program and its maps."""

    bpf: Any
    tracepoints: list[str] = field(default_factory=list)
    syscalls: list[str] = field(default_factory=list)  # the syscalls the dispatch follows
    ringbuf_size: int = 0
    typed_regs: bool = False  # the syscall programs are BTF-typed (tp_btf)
    addr_at_read: bool = False  # bpf/conn_addr.c is loaded
    fds: list[int] = field(default_factory=list)  # tp_btf links and programs, ours to close

    def table(self, name: str) -> Any:
        return self.bpf[name.encode()]

    def ringbuf_fd(self) -> int:
        return int(self.table("events").map_fd)

    def committed_fd(self) -> int:
        """The per-CPU count of ring-buffer bytes committed (bpf/common.h)."""
        return int(self.table("ring_committed").map_fd)

    def set_config(self, index: int, value: int) -> None:
        self.table("config")[ctypes.c_int(index)] = ctypes.c_uint64(value)

    def counters(self) -> dict[str, int]:
        table = self.table("counters")
        out = {}
        for i, name in enumerate(L.COUNTER_NAMES):
            out[name] = int(sum(table[ctypes.c_int(i)]))
        return out

    def close(self) -> None:
        """Detach every probe and free the maps."""
        for fd in self.fds:  # the links first: closing one detaches its program
            os.close(fd)
        self.fds.clear()
        if self.bpf is not None:
            self.bpf.cleanup()
            self.bpf = None


def find_tracefs() -> Path:
    """The mounted tracefs, mounting it when absent (README: Install)."""
    for p in TRACEFS_CANDIDATES:
        if (p / "events").is_dir():
            return p
    target = TRACEFS_CANDIDATES[0]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        subprocess.run(
            ["mount", "-t", "tracefs", "tracefs", str(target)],
            check=True,
            capture_output=True,
            timeout=10,
        )
    if (target / "events").is_dir():
        log.info("mounted tracefs on %s", target)
        return target
    raise NodetapError(
        "tracefs is not mounted and could not be mounted; "
        "run: mount -t tracefs tracefs /sys/kernel/tracing"
    )


def preflight() -> Path:
    """Check what BPF capture needs; return the tracefs path. Raises NodetapError."""
    if os.geteuid() != 0:
        raise NodetapError(
            "must run as root: BPF capture needs CAP_BPF and CAP_PERFMON (try: sudo nodetap ...)"
        )
    from agent import capabilities

    needed, wanted = capabilities.missing(capabilities.effective())
    if needed:
        raise NodetapError(
            f"missing capabilities: {'; '.join(needed)}; the capture needs CAP_BPF, "
            "CAP_PERFMON and CAP_SYS_PTRACE (CAP_SYS_ADMIN on kernels before 5.8)"
        )
    for w in wanted:
        log.warning("missing capability %s", w)
    try:
        import bcc  # noqa: F401
    except ImportError:
        raise NodetapError(
            "BCC is not importable from this Python; install python3-bpfcc and use the "
            "virtual environment made by scripts/setup.sh (README: Install)"
        ) from None
    kver = platform.release()
    build = Path("/lib/modules") / kver / "build"
    if not (build / "include").exists():
        raise NodetapError(
            f"kernel headers not found for {kver} ({build}); install linux-headers-amd64 "
            "and link them, or run scripts/setup.sh (README: Kernel headers)"
        )
    try:
        syscalls.numbers()
    except KeyError:
        raise NodetapError(
            f"nodetap knows the syscall numbers of x86_64 and aarch64 only, not of "
            f"{platform.machine()}"
        ) from None
    tracefs = find_tracefs()
    for tp in TRACEPOINTS:
        category, name = tp.split(":")
        if not (tracefs / "events" / category / name / "format").exists():
            raise NodetapError(
                f"tracepoint {tp} is missing on this kernel (needs CONFIG_FTRACE_SYSCALLS "
                "and CONFIG_TRACEPOINTS); nodetap cannot capture syscalls here"
            )
    return tracefs


def program_text(tls: bool = False) -> str:
    names = [n for s in SOURCES for n in (TLS_SOURCES.get(s, (s,)) if tls else (s,))]
    return "".join((BPF_DIR / name).read_text() for name in names)


def cflags(opts: LoadOptions, typed_regs: bool = False, addr_at_read: bool = False) -> list[str]:
    ring_bytes = opts.ringbuf_pages * os.sysconf("SC_PAGE_SIZE")
    reserve = ring_reserve(ring_bytes, possible_cpus())
    out = [
        f"-I{BPF_DIR}",
        f"-DNT_RINGBUF_PAGES={opts.ringbuf_pages}",
        f"-DNT_RING_DATA_LIMIT={ring_bytes - reserve}ULL",
        f"-DNT_RING_SMALL_LIMIT={ring_bytes - reserve // 2}ULL",
        f"-DNT_MAX_CONNS={opts.max_conns}",
        f"-DNT_NCPUS={possible_cpus()}",
        *(["-DNT_TYPED_REGS"] if typed_regs else []),
        *(["-DNT_TLS"] if opts.tls else []),
    ]
    if addr_at_read:
        nr = syscalls.numbers()
        out.append("-DNT_ADDR_AT_READ")
        out += [f"-DNT_NR_{n.upper()}={nr[n]}" for n in syscalls.ADDR_READ_SYSCALLS]
    return out


def addr_tracepoint_usable(tracefs: Path | None = None) -> bool:
    """Whether this kernel's tcp:tcp_rcv_space_adjust has the arguments bpf/conn_addr.c
    reads (kernel 6.x; older ones lack the tracepoint or its addresses)."""
    category, name = ADDR_TRACEPOINT.split(":")
    for base in (tracefs,) if tracefs else TRACEFS_CANDIDATES:
        try:
            fmt = (base / "events" / category / name / "format").read_text()
        except OSError:
            continue
        return all(f" {f};" in fmt or f" {f}[" in fmt for f in _ADDR_FIELDS)
    return False


def sys_exit_btf_id(opts: LoadOptions) -> int | None:
    """The BTF id to load the syscall programs with, or None for plain raw tracepoints."""
    if opts.typed_regs is False:
        return None
    btf_id = btf_tracepoint.raw_tp_btf_id("sys_exit") if platform.machine() == "x86_64" else None
    if btf_id is None and opts.typed_regs:
        raise NodetapError(
            "typed register reads need x86-64, kernel BTF (/sys/kernel/btf/vmlinux) and "
            "libbpf1; this node lacks one of them"
        )
    return btf_id


def load(opts: LoadOptions) -> Probes:
    """Compile, load and attach. The programs track nothing until armed (NT_CFG_ARMED)."""
    preflight()
    if opts.ringbuf_pages <= 0 or opts.ringbuf_pages & (opts.ringbuf_pages - 1):
        raise NodetapError(f"--ringbuf-pages must be a power of two, not {opts.ringbuf_pages}")
    btf_id = sys_exit_btf_id(opts)
    addr = opts.addr_at_read is not False and addr_tracepoint_usable()
    if not addr and opts.addr_at_read is not False:
        log.warning(
            "this kernel has no usable %s tracepoint: addresses of connections accepted "
            "without a sockaddr (Node.js, uvloop) come from /proc when it can be trusted, "
            "else from their close, else they stay empty (flag noaddr)",
            ADDR_TRACEPOINT,
        )
    try:
        return _load_addr(opts, btf_id, addr)
    except NodetapError as e:
        if btf_id is None or opts.typed_regs:
            raise
        # the kernel has BTF but refused a typed program: the untyped ones still work
        log.warning("%s; loading the programs again with probe reads of the registers", e)
        return _load_addr(opts, None, addr)


def _load_addr(opts: LoadOptions, btf_id: int | None, addr: bool) -> Probes:
    """_load, and again without bpf/conn_addr.c if the kernel refuses it (no
    bpf_task_pt_regs before 5.15)."""
    try:
        return _load(opts, btf_id, addr)
    except NodetapError as e:
        if not addr:
            raise
        log.warning(
            "%s; loading without the addresses at first read (%s): connections accepted "
            "without a sockaddr get theirs from /proc when it can be trusted",
            e,
            ADDR_TRACEPOINT,
        )
        return _load(opts, btf_id, False)


def _load(opts: LoadOptions, btf_id: int | None, addr: bool = False) -> Probes:
    from bcc import BPF

    try:
        bpf = BPF(
            text=program_text(opts.tls).encode(), cflags=cflags(opts, btf_id is not None, addr)
        )
    except Exception as e:  # BCC raises bare Exceptions
        msg = str(e)
        if "Operation not permitted" in msg or "EPERM" in msg:
            raise NodetapError(
                "the kernel refused to load BPF programs (operation not permitted); run as "
                "root with CAP_BPF/CAP_PERFMON, and check kernel.unprivileged_bpf_disabled "
                "and lockdown settings"
            ) from None
        raise NodetapError(
            f"BPF program failed to load: {msg.splitlines()[-1] if msg else e}"
        ) from None
    probes = Probes(bpf=bpf, typed_regs=btf_id is not None, addr_at_read=addr)
    try:
        if opts.tls:  # the TLS copy's tail calls (bpf/tls_openssl.c), uprobe programs
            step = bpf.load_func(b"nt_tls_step", BPF.KPROBE)
            bpf[b"tls_progs"][ctypes.c_int(0)] = ctypes.c_int(step.fd)
        if btf_id is None:
            raw = BPF.RAW_TRACEPOINT
            probes.syscalls = _fill_dispatch(bpf, lambda name: bpf.load_func(name.encode(), raw).fd)
            bpf.attach_raw_tracepoint(tp=b"sys_exit", fn_name=b"nt_sys_exit")
        else:
            probes.syscalls = _fill_dispatch(bpf, lambda name: _typed(probes, name, btf_id))
            probes.fds.insert(0, btf_tracepoint.attach(_typed(probes, "nt_sys_exit", btf_id)))
    except Exception as e:
        probes.close()
        why = e.strerror if isinstance(e, OSError) and e.strerror else e
        raise NodetapError(f"BPF syscall handlers failed to load: {why}") from None
    attached = sorted(
        [_tp_name(tp) for tp in bpf.tracepoint_fds]
        + [f"raw_syscalls:{_tp_name(tp)}" for tp in bpf.raw_tracepoint_fds]
    )
    if btf_id is not None:
        attached = sorted([*attached, "raw_syscalls:sys_exit"])
    missing = set(TRACEPOINTS) - set(attached)
    if missing:
        probes.close()
        raise NodetapError(f"could not attach tracepoints: {', '.join(sorted(missing))}")
    log.info(
        "attached %s (%s); following %s",
        ", ".join(attached),
        "BTF-typed" if btf_id is not None else "untyped",
        ", ".join(probes.syscalls),
    )
    probes.tracepoints = attached
    probes.ringbuf_size = opts.ringbuf_pages * os.sysconf("SC_PAGE_SIZE")
    release_compiler_memory()
    return probes


def _typed(probes: Probes, name: str, btf_id: int) -> int:
    fd = btf_tracepoint.load(probes.bpf, name, btf_id)
    probes.fds.append(fd)
    return fd


def _tp_name(tp: bytes | str) -> str:
    return tp.decode() if isinstance(tp, bytes) else str(tp)


def _fill_dispatch(bpf: Any, load_fd: Callable[[str], int]) -> list[str]:
    """Load the syscall handlers (load_fd: a function's name to a program fd) and put
    them in the dispatch array at their syscall numbers (bpf/syscall_dispatch.c); return
    the syscalls followed."""
    numbers = syscalls.numbers()
    fds: dict[str, int] = {}

    def fd_of(name: str) -> int:
        if name not in fds:
            fds[name] = load_fd(name)
        return fds[name]

    bpf[b"iov_progs"][ctypes.c_int(0)] = ctypes.c_int(fd_of("nt_iov_step"))
    exit_ = bpf[b"sys_exit_progs"]
    followed = syscalls.followed()
    for name in followed:
        on_exit = syscalls.HANDLERS[name][1]
        if on_exit:
            exit_[ctypes.c_int(numbers[name])] = ctypes.c_int(fd_of(on_exit))
    return followed
