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

# function -> (entry program, whether it has a return probe)
ENTRY_PROGRAMS = {
    "SSL_read": "nt_ssl_read_enter",
    "SSL_write": "nt_ssl_write_enter",
    "SSL_read_ex": "nt_ssl_read_ex_enter",
    "SSL_write_ex": "nt_ssl_write_ex_enter",
}
RETURN_PROGRAM = "nt_ssl_return"


@dataclass
class Attachment:
    target: Target
    fd: int  # the file, held open: probes are attached and detached through /proc/self/fd
    symbols: list[str] = field(default_factory=list)  # attached, entry and return
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
                for sym in target.symbols:
                    # the return probe first: a call whose entry was seen must be seen
                    # returning, or its thread would keep a stale "in an SSL call" state
                    self.bpf.attach_uretprobe(
                        name=name, sym=sym.encode(), fn_name=RETURN_PROGRAM.encode()
                    )
                    try:
                        self.bpf.attach_uprobe(
                            name=name, sym=sym.encode(), fn_name=ENTRY_PROGRAMS[sym].encode()
                        )
                    except Exception:
                        self.bpf.detach_uretprobe(name=name, sym=sym.encode())
                        raise
                    att.symbols.append(sym)
            except Exception as e:  # BCC raises bare Exceptions
                self._detach(att)
                os.close(att.fd)
                return f"attaching uprobes failed: {e}"
            self.files[target.key] = att
            log.info("TLS uprobes attached to %s (%s)", target.path, ", ".join(att.symbols))
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
        for sym in att.symbols:
            for detach in (self.bpf.detach_uprobe, self.bpf.detach_uretprobe):
                try:
                    detach(name=name, sym=sym.encode())
                except Exception:  # the file is gone: the kernel dropped the probe
                    log.debug("detaching %s from %s failed", sym, att.target.path)
        att.symbols.clear()

    def close(self) -> None:
        for att in list(self.files.values()):
            self._detach(att)
            os.close(att.fd)
        self.files.clear()
