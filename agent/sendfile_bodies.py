"""The bytes a sendfile() moved, read back from the file it sent them from.

The kernel copies sendfile's bytes from file pages to the socket: no user buffer ever
holds them, so the BPF programs describe them instead (bpf/sendfile_source.c,
NT_EV_SENDFILE): the path the process opened the file by, the file offset, the count.
This module reads that range from the file, on the agent's side, when the record is
decoded (later than the send).

How the file is found, and what can go wrong in between:
- The path is resolved as the process sees it: an absolute path under
  ``/proc/PID/root`` (its mount namespace: a container's files), a relative one under
  ``/proc/PID/cwd`` or the directory fd openat was given (``/proc/PID/fd/DIRFD``).
- If the process still has ``in_fd`` open on the file the path names (st_dev, st_ino),
  the range is read through a duplicate of that fd (``pidfd_getfd``; ``pread`` shares
  nothing with the server's file position). An fd naming another file is taken for a
  reused fd (the record does not say which inode was sent from: the programs read no
  kernel struct), and the path stands. nginx closes the file right after sending, so
  usually the path is what is left. A file replaced under its path before the send,
  while the sender kept the old one open, is read from the new file: not detectable.
- A file whose status changed after the send (its ctime is later than the send) or that
  is now shorter than the range is not read: the bytes stay a ``gap``, counted
  (``drop_sendfile_unreadable_bytes``). A change that leaves ctime alone cannot be seen
  (nothing in a file says what it held earlier): then the bytes read are the file's
  current ones. The process gone, the path unreadable: ``gap`` too.
- Only the first ``bound`` bytes are read (agent/copy_bound.py: --max-body and room for
  a head); the rest is skipped inside the body, which is then ``truncated``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import stat
from collections import OrderedDict
from dataclasses import dataclass

from agent import bpf_layout as L

_SYS_PIDFD_GETFD = 438  # the same number on x86-64 and arm64
_libc = ctypes.CDLL(None, use_errno=True)
_PIDFDS_KEPT = 64


@dataclass(frozen=True, slots=True)
class SendfileRecord:
    """An NT_EV_SENDFILE record (bpf/nodetap.h: struct nt_sendfile_event)."""

    dir: int
    length: int
    conn_id: int
    ts_ns: int
    offset: int  # stream offset of the first byte
    tgid: int
    file_off: int
    in_fd: int
    dirfd: int
    path: bytes

    @classmethod
    def unpack(cls, rec: memoryview) -> SendfileRecord:
        f = L.SENDFILE_EVENT.unpack_from(rec)
        _kind, d, _sc, ln, cid, ts, off, tgid, _fd, file_off, in_fd, dirfd, path_len = f
        start = L.SENDFILE_EVENT.size
        n = max(0, min(path_len, L.NT_PATH_MAX) - 1)  # path_len counts the NUL
        path = rec[start : start + n].tobytes()
        return cls(d, ln, cid, ts, off, tgid, file_off, in_fd, dirfd, path)


def _pidfd_getfd(pidfd: int, fd: int) -> int:
    got = int(_libc.syscall(_SYS_PIDFD_GETFD, pidfd, fd, 0))
    if got < 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))
    return got


class FileRanges:
    """Reads sendfile ranges back from files; keeps a few pidfds of the senders."""

    def __init__(self, bound: int) -> None:
        self.bound = bound
        self._pidfds: OrderedDict[int, int] = OrderedDict()

    def read(self, r: SendfileRecord, sent_wall_ns: int) -> bytes | None:
        """The first min(length, bound) bytes of the range, or None (not recoverable)."""
        want = min(r.length, self.bound)
        path = self._resolve(r)
        fd = self._open_same(r, path)
        if fd is None:
            return None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                return None
            if st.st_ctime_ns > sent_wall_ns or st.st_size < r.file_off + r.length:
                return None  # changed since the send, or shorter than what was sent
            parts = []
            got = 0
            while got < want:
                b = os.pread(fd, min(want - got, 1 << 20), r.file_off + got)
                if not b:
                    return None
                parts.append(b)
                got += len(b)
            return b"".join(parts)
        except OSError:
            return None
        finally:
            os.close(fd)

    def close(self) -> None:
        for fd in self._pidfds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        self._pidfds.clear()

    def _resolve(self, r: SendfileRecord) -> str | None:
        if not r.path:
            return None
        proc = f"/proc/{r.tgid}"
        p = os.fsdecode(r.path)
        if p.startswith("/"):
            return f"{proc}/root{p}"
        if r.dirfd == L.NT_AT_FDCWD:
            return f"{proc}/cwd/{p}"
        return f"{proc}/fd/{r.dirfd}/{p}"

    def _open_same(self, r: SendfileRecord, path: str | None) -> int | None:
        """An fd on the file the bytes came from: the process's own in_fd when it is
        still open on the file the path names (or the path is gone), else the path's."""
        by_path: int | None = None
        if path is not None:
            with contextlib.suppress(OSError):
                by_path = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        dup = self._dup(r.tgid, r.in_fd)
        if dup is None:
            return by_path
        if by_path is None:
            # the path is gone (renamed, deleted): the fd of that number may name
            # another file by now, and nothing says which: not trusted
            os.close(dup)
            return None
        a, b = os.fstat(dup), os.fstat(by_path)
        if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino):
            os.close(by_path)
            return dup
        os.close(dup)  # the fd names another file now (reused): the path stands
        return by_path

    def _dup(self, tgid: int, fd: int) -> int | None:
        pidfd = self._pidfd(tgid)
        if pidfd is None or fd < 0:
            return None
        try:
            return _pidfd_getfd(pidfd, fd)
        except OSError as e:
            if e.errno == errno.ESRCH:
                self._forget(tgid)
            return None

    def _pidfd(self, tgid: int) -> int | None:
        pidfd = self._pidfds.get(tgid)
        if pidfd is not None:
            self._pidfds.move_to_end(tgid)
            return pidfd
        try:
            pidfd = os.pidfd_open(tgid)
        except OSError:
            return None
        self._pidfds[tgid] = pidfd
        if len(self._pidfds) > _PIDFDS_KEPT:
            _, old = self._pidfds.popitem(last=False)
            os.close(old)
        return pidfd

    def _forget(self, tgid: int) -> None:
        pidfd = self._pidfds.pop(tgid, None)
        if pidfd is not None:
            os.close(pidfd)
