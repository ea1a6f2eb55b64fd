"""Uprobes on SSL_read/SSL_write(_ex), attached once per file (a libssl.so or an executable
that links OpenSSL statically) and reference-counted by the processes they serve.

One attachment of a file serves every process that maps it (the kernel places a uprobe on
the file's inode), so the programs' first test is whether the process is tracked
(bpf/tls_openssl.c); the file is detached when the last targeted process using it exits.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

from agent.tls.classify import Target

log = logging.getLogger(__name__)

# OpenSSL: function -> entry program; every function's return: RETURN_PROGRAM (uretprobe)
ENTRY_PROGRAMS = {
    "SSL_read": "nt_ssl_read_enter",
    "SSL_write": "nt_ssl_write_enter",
    "SSL_read_ex": "nt_ssl_read_ex_enter",
    "SSL_write_ex": "nt_ssl_write_ex_enter",
}
RETURN_PROGRAM = "nt_ssl_return"
# Go crypto/tls (bpf/tls_go.c): entry programs, and GO_RETURN_PROGRAM at each RET
GO_ENTRY_PROGRAMS = {
    "crypto/tls.(*Conn).Read": "nt_go_read_enter",
    "crypto/tls.(*Conn).Write": "nt_go_write_enter",
}
GO_RETURN_PROGRAM = "nt_go_return"

# an attached probe: (symbol, offset in it, whether it is a uretprobe)
Probe = tuple[str, int, bool]


def planned(target: Target) -> list[tuple[Probe, str]]:
    """The probes a target needs, with their programs, in attaching order: returns before
    entries (a call whose entry was seen must be seen returning, or its thread or goroutine
    would keep a stale "in a TLS call" state)."""
    if target.go_rets:
        out: list[tuple[Probe, str]] = []
        for sym, offsets in target.go_rets:  # (*Conn).Read
            out += [((sym, off, False), GO_RETURN_PROGRAM) for off in offsets]
        for sym in target.symbols:  # (*Conn).Read and Write
            out.append(((sym, 0, False), GO_ENTRY_PROGRAMS[sym]))
        return out
    out = []
    for sym in target.symbols:
        out.append(((sym, 0, True), RETURN_PROGRAM))
        out.append(((sym, 0, False), ENTRY_PROGRAMS[sym]))
    return out


@dataclass
class Attachment:
    target: Target
    fd: int  # the file, held open: probes are attached and detached through /proc/self/fd
    probes: list[Probe] = field(default_factory=list)  # attached
    pids: set[int] = field(default_factory=set)

    @property
    def path(self) -> bytes:
        """A name of the file that stays valid while the agent holds it open, even when
        the process it was found through (its /proc/PID/root) is gone."""
        return f"/proc/self/fd/{self.fd}".encode()


class Attacher:
    """Attach and detach the TLS uprobes of a loaded BCC program (``bpf``)."""

    def __init__(self, bpf: Any) -> None:
        self.bpf = bpf
        self.files: dict[tuple[int, int], Attachment] = {}

    def acquire(self, target: Target, pid: int) -> str | None:
        """Make sure target's file is probed for pid; None on success, else why not."""
        att = self.files.get(target.key)
        if att is None:
            try:
                att = Attachment(target, os.open(target.path, os.O_RDONLY | os.O_CLOEXEC))
            except OSError as e:
                return f"cannot open {target.path}: {e.strerror}"
            if (lambda st: (st.st_dev, st.st_ino))(os.fstat(att.fd)) != target.key:
                os.close(att.fd)
                return f"{target.path} changed while it was looked at"
            try:
                name = att.path
                for (sym, off, ret), program in planned(target):
                    if ret:
                        self.bpf.attach_uretprobe(
                            name=name, sym=sym.encode(), fn_name=program.encode()
                        )
                    else:
                        self.bpf.attach_uprobe(
                            name=name, sym=sym.encode(), sym_off=off, fn_name=program.encode()
                        )
                    att.probes.append((sym, off, ret))
            except Exception as e:  # BCC raises bare Exceptions
                self._detach(att)
                os.close(att.fd)
                return f"attaching uprobes failed: {e}"
            self.files[target.key] = att
            log.info("TLS uprobes attached to %s (%d probes)", target.path, len(att.probes))
        att.pids.add(pid)
        return None

    def release(self, key: tuple[int, int], pid: int) -> None:
        """pid no longer uses the file: detach it when nobody does."""
        att = self.files.get(key)
        if att is None:
            return
        att.pids.discard(pid)
        if not att.pids:
            del self.files[key]
            self._detach(att)
            os.close(att.fd)
            log.info("TLS uprobes detached from %s", att.target.path)

    def _detach(self, att: Attachment) -> None:
        name = att.path
        for sym, off, ret in reversed(att.probes):  # entries first
            try:
                if ret:
                    self.bpf.detach_uretprobe(name=name, sym=sym.encode())
                else:
                    self.bpf.detach_uprobe(name=name, sym=sym.encode(), sym_off=off)
            except Exception:  # the file is gone: the kernel dropped the probe
                log.debug("detaching %s+%d from %s failed", sym, off, att.target.path)
        att.probes.clear()

    def close(self) -> None:
        for att in list(self.files.values()):
            self._detach(att)
            os.close(att.fd)
        self.files.clear()
