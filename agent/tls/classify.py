"""A process's TLS library, and whether nodetap can hook it (and if not, why).

One row per process of the coverage table (agent/tls/coverage.py):
- ``openssl`` (a libssl.so it maps): hooked through that file's uprobes;
- ``openssl-static`` / ``boringssl-static`` (the executable defines SSL_write): hooked
  through the executable's uprobes;
- ``go`` (crypto/tls, Go 1.17 on, x86-64): hooked through the executable's uprobes at
  (*Conn).Read/Write and their RET instructions (a stripped binary cannot be);
- not hooked, with the reason: ``go`` (stripped, before 1.17, not x86-64), ``java`` (JSSE
  is not OpenSSL), ``rustls``, ``grpcio`` (Python's gRPC links BoringSSL into its extension
  module, cygrpc, and exports none of its symbols: its calls cannot be probed; a libssl the
  process also maps is still hooked for the process's other TLS), ``nodejs`` (its TLS
  writes through memory BIOs: the ciphertext leaves later, on another path, so calls cannot
  be tied to sockets);
- ``none``: no TLS library found.
Executables are inspected once per file (``ExeCache``, by device and inode).
"""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Callable
from dataclasses import dataclass

from agent.tls import elf, go_rets
from agent.tls.maps import MappedFile, host_path, is_libssl

SSL_SYMBOLS = ("SSL_read", "SSL_write", "SSL_read_ex", "SSL_write_ex")
GO_SYMBOLS = ("crypto/tls.(*Conn).Read", "crypto/tls.(*Conn).Write")
_BORINGSSL = "BORINGSSL_self_test"
_NODE = ("node", "nodejs")
# grpcio's extension module, with BoringSSL linked in (grpc/_cython/cygrpc.cpython-*.so)
_GRPCIO = re.compile(r"/grpc/_cython/cygrpc\.[^/]*so$")

HOOKED = "hooked"
NOT_HOOKED = "not_hooked"
NO_TLS = "none"


@dataclass(frozen=True)
class Target:
    """A file whose uprobes serve a process: where to open it and its identity."""

    path: str  # openable by the agent (through /proc/PID/root)
    key: tuple[int, int]  # (st_dev, st_ino): one attachment per file
    symbols: tuple[str, ...]  # of SSL_SYMBOLS (or GO_SYMBOLS), those the file defines
    # Go: (*Conn).Read and the offsets of its RET instructions (agent/tls/go_rets.py)
    go_rets: tuple[tuple[str, tuple[int, ...]], ...] = ()


@dataclass(frozen=True)
class Coverage:
    pid: int
    comm: str
    library: str  # openssl, openssl-static, boringssl-static, go, java, rustls, nodejs, none
    state: str  # HOOKED, NOT_HOOKED, NO_TLS (coverage.py may set "failed")
    reason: str  # the file hooked, or why not
    target: Target | None = None


@dataclass(frozen=True)
class ExeFacts:
    go: bool
    go_version: str
    stripped: bool
    go_tls: bool
    ssl_symbols: tuple[str, ...]
    boringssl: bool
    rustls: bool


class ExeCache:
    """ExeFacts by executable file (device, inode): an ELF file is read once."""

    def __init__(self, max_entries: int = 4096) -> None:
        self._facts: dict[tuple[int, int], ExeFacts | None] = {}
        self._symbols: dict[tuple[int, int], tuple[str, ...]] = {}
        self._rets: dict[tuple[int, int], tuple[tuple[str, tuple[int, ...]], ...]] = {}
        self.max_entries = max_entries

    def _trim(self) -> None:
        while len(self._facts) > self.max_entries:
            del self._facts[next(iter(self._facts))]
        while len(self._symbols) > self.max_entries:
            del self._symbols[next(iter(self._symbols))]

    def exe(self, path: str, key: tuple[int, int]) -> ExeFacts | None:
        if key not in self._facts:
            info = elf.inspect_path(path, (*SSL_SYMBOLS, *GO_SYMBOLS, _BORINGSSL), (b"rustls",))
            if info is None:
                self._facts[key] = None
            else:
                go = ".go.buildinfo" in info.sections or ".gopclntab" in info.sections
                self._facts[key] = ExeFacts(
                    go=go,
                    go_version=info.go_version,
                    stripped=not info.has_symtab,
                    go_tls=set(GO_SYMBOLS) <= info.defined,
                    ssl_symbols=tuple(s for s in SSL_SYMBOLS if s in info.defined),
                    boringssl=_BORINGSSL in info.defined,
                    rustls=bool(info.matching),
                )
            self._trim()
        return self._facts[key]

    def go_rets(self, path: str, key: tuple[int, int]) -> tuple[tuple[str, tuple[int, ...]], ...]:
        if key not in self._rets:
            read = GO_SYMBOLS[0]  # Write's bytes are copied at its entry (bpf/tls_go.c)
            self._rets[key] = ((read, go_rets.ret_offsets(path, read)),)
        return self._rets[key]

    def library_symbols(self, path: str, key: tuple[int, int]) -> tuple[str, ...]:
        if key not in self._symbols:
            info = elf.inspect_path(path, SSL_SYMBOLS)
            self._symbols[key] = tuple(
                s for s in SSL_SYMBOLS if info is not None and s in info.defined
            )
            self._trim()
        return self._symbols[key]


def _stat_key(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _go_version(text: str) -> tuple[int, int]:
    m = re.match(r"go(\d+)\.(\d+)", text)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _go_row(
    row: Callable[..., Coverage],
    exe_path: str,
    exe_key: tuple[int, int],
    facts: ExeFacts,
    cache: ExeCache,
) -> Coverage:
    """A Go executable with crypto/tls: hooked at (*Conn).Read/Write and their RETs (amd64,
    Go 1.17 on: the register ABI bpf/tls_go.c reads)."""
    version = facts.go_version or "unknown Go version"
    if platform.machine() != "x86_64":
        return row("go", NOT_HOOKED, f"Go crypto/tls is hooked on x86-64 only ({version})")
    if _go_version(facts.go_version) < (1, 17):
        return row("go", NOT_HOOKED, f"Go before 1.17 (stack ABI) is not hooked ({version})")
    rets = cache.go_rets(exe_path, exe_key)
    if not all(offsets for _, offsets in rets):
        return row("go", NOT_HOOKED, f"RET instructions of crypto/tls not found ({version})")
    target = Target(exe_path, exe_key, GO_SYMBOLS, rets)
    return row("go", HOOKED, f"{exe_path} crypto/tls ({version})", target)


def classify(pid: int, comm: str, mapped: list[MappedFile], cache: ExeCache) -> Coverage:
    """The coverage row of pid, from the files it maps (its executable first)."""
    exe_path = f"/proc/{pid}/exe"
    try:
        exe_name = os.path.basename(os.readlink(exe_path))
    except OSError:
        exe_name = ""
    exe_key = _stat_key(exe_path)
    facts = cache.exe(exe_path, exe_key) if exe_key else None
    names = {os.path.basename(m.path) for m in mapped}

    def row(library: str, state: str, reason: str, target: Target | None = None) -> Coverage:
        return Coverage(pid, comm, library, state, reason, target)

    if exe_name in _NODE or any(n.startswith("libnode.so") for n in names):
        return row("nodejs", NOT_HOOKED, "Node.js TLS writes through memory BIOs (not covered)")
    if "libjvm.so" in names:
        return row("java", NOT_HOOKED, "Java's TLS (JSSE) is not OpenSSL")
    if facts is not None and facts.go:
        if facts.stripped:
            return row("go", NOT_HOOKED, "stripped Go binary (no symbols to probe)")
        if facts.go_tls and exe_key:
            return _go_row(row, exe_path, exe_key, facts, cache)
    if facts is not None and {"SSL_read", "SSL_write"} <= set(facts.ssl_symbols) and exe_key:
        lib = "boringssl-static" if facts.boringssl else "openssl-static"
        return row(lib, HOOKED, exe_path, Target(exe_path, exe_key, facts.ssl_symbols))
    libssl = _libssl_row(pid, mapped, cache, row)
    grpcio = next((m for m in mapped if _GRPCIO.search(m.path)), None)
    if grpcio is not None:
        return _grpcio_row(pid, grpcio, libssl, cache, row)
    if libssl is not None:
        return libssl
    if facts is not None and facts.rustls:
        return row("rustls", NOT_HOOKED, "rustls is not hooked")
    if facts is not None and facts.go:
        return row("go", NOT_HOOKED if facts.go_tls else NO_TLS, "Go binary")
    return row("none", NO_TLS, "no TLS library found")


def _libssl_row(
    pid: int, mapped: list[MappedFile], cache: ExeCache, row: Callable[..., Coverage]
) -> Coverage | None:
    """The row of the first libssl.so pid maps (None: it maps none)."""
    for m in mapped:
        if not is_libssl(m.path):
            continue
        path = host_path(pid, m.path)
        key = _stat_key(path)
        if key is None:
            return row("openssl", NOT_HOOKED, f"{m.path} cannot be opened")
        symbols = cache.library_symbols(path, key)
        if not {"SSL_read", "SSL_write"} <= set(symbols):
            return row("openssl", NOT_HOOKED, f"{m.path} has no SSL_read/SSL_write symbols")
        return row("openssl", HOOKED, m.path, Target(path, key, symbols))
    return None


def _grpcio_row(
    pid: int,
    module: MappedFile,
    libssl: Coverage | None,
    cache: ExeCache,
    row: Callable[..., Coverage],
) -> Coverage:
    """A process with grpcio: hooked in its extension module if that defines SSL_read and
    SSL_write (a build with symbols); else not hooked, its libssl (if any) still probed."""
    path = host_path(pid, module.path)
    key = _stat_key(path)
    symbols = cache.library_symbols(path, key) if key else ()
    if key and {"SSL_read", "SSL_write"} <= set(symbols):
        return row("grpcio", HOOKED, f"{module.path} (BoringSSL)", Target(path, key, symbols))
    why = f"grpcio's BoringSSL is linked into {os.path.basename(module.path)} without symbols"
    if libssl is not None and libssl.state == HOOKED:
        return row("grpcio", NOT_HOOKED, f"{why} ({libssl.reason} hooked)", libssl.target)
    return row("grpcio", NOT_HOOKED, why)
