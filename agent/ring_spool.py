"""A spool of ring-buffer extents on disk, so that the capture can run as two processes.

The kernel drops records when the BPF ring buffer is full, and the decoder (HTTP parsing,
protobuf, sinks) is what falls behind under load. Splitting the two lets a tiny drain
process (agent.spool_drain), at normal CPU priority, copy committed extents out of the ring
into files, while the decoder runs at idle priority and reads records from those files
whenever it gets the CPU: a burst then costs disk space, not records.

The files hold the ring's own format (8-byte headers, 8-byte aligned records), so the
decoder walks them with agent.ringbuf.iter_records. Segment names are the spool offset of
their first byte, f"{start:016x}.seg"; the writer starts the next segment only once the
current one is complete, and the reader deletes a segment once it has read it completely
and a newer one exists (so the newest one is never deleted under the writer).

An extent is committed the way the kernel commits a record: it is written with BUSY set in
its first header, which is cleared (a 4-byte write changing one byte) once every byte is
in the file. A reader therefore never walks into an extent that is still being written, or
one that a failed write (ENOSPC) is about to truncate away. The files are a queue between
two processes, not durable storage: there is no fsync.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import struct
from collections.abc import Iterator, Sequence
from pathlib import Path

from agent.ringbuf import BUSY, HDR, iter_records, whole_prefix

_SEG_NAME = re.compile(r"^([0-9a-f]{16})\.seg$")
_u32 = struct.Struct("<I")
_LEN_MASK = 0x3FFFFFFF


def segment_name(start: int) -> str:
    return f"{start:016x}.seg"


def segment_paths(directory: Path) -> list[tuple[int, Path]]:
    """The spool's segment files, as (start offset, path), oldest first."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    out = []
    for name in names:
        m = _SEG_NAME.match(name)
        if m:
            out.append((int(m.group(1), 16), directory / name))
    out.sort()
    return out


def _pwrite_all(fd: int, bufs: Sequence[bytes | memoryview], pos: int) -> None:
    views = [memoryview(b) for b in bufs if len(b)]
    while views:
        n = os.pwritev(fd, views, pos)
        if n <= 0:
            raise OSError(errno.ENOSPC, "short write")
        pos += n
        while n:
            if n >= len(views[0]):
                n -= len(views.pop(0))
            else:
                views[0] = views[0][n:]
                n = 0


class RingSpoolWriter:
    """Appends ring-buffer extents to the spool, within a bound on its disk usage.

    The usage is the bytes written minus the start of the oldest segment still present
    (the reader deletes the segments it has consumed). A segment is at most a quarter of
    max_bytes, so that the reader frees space in steps smaller than the bound.
    """

    def __init__(self, directory: Path, max_bytes: int, segment_bytes: int = 16 << 20) -> None:
        if max_bytes <= 0 or segment_bytes <= 0:
            raise ValueError("max_bytes and segment_bytes must be positive")
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = max(HDR, min(segment_bytes, max_bytes // 4))
        self.bytes_written = 0
        self.extents = 0
        self.refusals = 0  # spool full or write failed: the caller keeps the extent
        self.write_errors = 0  # the refusals that were a failed write (ENOSPC...)
        self.last_error: OSError | None = None
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        # A spool left by an earlier writer is continued after its last segment (which
        # may end with a torn extent if that writer was killed: the reader drops it).
        segs = segment_paths(directory)
        if segs:
            start, path = segs[-1]
            self._end = start + path.stat().st_size
            self._oldest = segs[0][0]
        else:
            self._end = self._oldest = 0
        self._fd = -1
        self._seg_size = 0

    def usage(self) -> int:
        """Spool bytes on disk that count against max_bytes (looks at the directory)."""
        self._oldest = self._oldest_start()
        return self._end - self._oldest

    def _oldest_start(self) -> int:
        segs = segment_paths(self.directory)
        return segs[0][0] if segs else self._end

    def append(self, extent: bytes) -> bool:
        """Write one extent (whole records, as read from the ring); False when refused:
        the spool would exceed max_bytes, or the write failed (nothing of it then stays)."""
        n = len(extent)
        if n == 0:
            return True
        if n & 7 or n < HDR:
            raise ValueError(f"an extent of ring-buffer records is 8-byte aligned, not {n}")
        # usage only shrinks behind our back (the reader deletes): look again only when
        # the cached value says no
        if self._end - self._oldest + n > self.max_bytes and self.usage() + n > self.max_bytes:
            self.refusals += 1
            return False
        try:
            if self._fd < 0:
                self._open_segment()
            self._write(extent)
        except OSError as e:
            self.refusals += 1
            self.write_errors += 1
            self.last_error = e
            return False
        self._end += n
        self._seg_size += n
        self.bytes_written += n
        self.extents += 1
        if self._seg_size >= self.segment_bytes:
            # Rotate now, not at the next append: the reader can then delete this
            # segment as soon as it has read it (if the next file cannot be created,
            # the next append tries again).
            os.close(self._fd)
            self._fd = -1
            with contextlib.suppress(OSError):
                self._open_segment()
        return True

    def _open_segment(self) -> None:
        path = self.directory / segment_name(self._end)
        # O_TRUNC: the name can only exist already as an empty segment left by an earlier
        # writer (or one holding nothing but a torn extent)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        self._fd = os.open(path, flags, 0o600)
        self._seg_size = 0

    def _write(self, extent: bytes) -> None:
        fd = self._fd
        pos = self._seg_size
        view = memoryview(extent)
        first = _u32.unpack_from(view, 0)[0]
        try:
            _pwrite_all(fd, (_u32.pack(first | BUSY), view[4:]), pos)
            _pwrite_all(fd, (view[:4],), pos)  # commit: clear BUSY
        except OSError:
            try:
                os.ftruncate(fd, pos)
            except OSError:
                # cannot take the torn extent back: leave it at the end of this segment
                # (the reader drops it once a newer segment exists) and start a new one
                os.close(fd)
                self._fd = -1
            raise

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class RingSpoolReader:
    """Reads the records of a spool in order, for the decoder (the consumer side of
    RingBufferReader's interface: read, pending, close)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.bytes_read = 0
        self.discarded_bytes = 0  # torn extents at the end of segments (writer killed)
        self._fd = -1
        self._start = -1  # the open segment's start offset
        self._pos = 0  # offset in it of the next unread record
        self._done = -1  # start offset of the last segment read completely

    def read(self, max_bytes: int = 64 << 20) -> Iterator[memoryview]:
        """Yield the payload of each record not read yet, oldest first, up to about
        max_bytes of spool (at least one record).

        As with RingBufferReader.read, the records count as read once the first one is
        yielded; the views stay valid. A record still being written is left for the
        next call.
        """
        budget = max_bytes
        yielded = False
        while True:
            # list before looking at the size: if a newer segment exists now, the size
            # read below is final (the writer completes a segment before the next one)
            segs = segment_paths(self.directory)
            if self._fd < 0 and not self._open_next(segs):
                return
            newer = bool(segs) and segs[-1][0] > self._start
            fd = self._fd
            avail = os.fstat(fd).st_size - self._pos
            want = min(avail, budget)
            data = os.pread(fd, want, self._pos) if want > 0 else b""
            n = whole_prefix(data)
            if n == 0 and want < avail:
                if yielded:
                    return  # the budget is spent
                data = self._read_record(fd)  # the first record is longer than the budget
                n = whole_prefix(data)
                cut = n > 0
            else:
                cut = want < avail  # stopped by the budget, not by the end of the file
            if n:
                self._pos += n
                self.bytes_read += n
                budget -= n
                yielded = True
                yield from iter_records(memoryview(data)[:n])
            if cut and n < avail:
                if budget <= 0:
                    return
                continue  # more of this segment
            if not newer:
                return  # caught up, or a record still being written
            # the segment is complete: whatever is left of it is a torn extent
            self.discarded_bytes += avail - n
            self._finish()
            if budget <= 0:
                return

    def _read_record(self, fd: int) -> bytes:
        head = os.pread(fd, HDR, self._pos)
        if len(head) < HDR or _u32.unpack_from(head, 0)[0] & BUSY:
            return head
        size = (HDR + (_u32.unpack_from(head, 0)[0] & _LEN_MASK) + 7) & ~7
        return os.pread(fd, size, self._pos)

    def _open_next(self, segs: list[tuple[int, Path]]) -> bool:
        for start, path in segs:
            if start <= self._done:
                continue
            try:
                self._fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                continue
            self._start = start
            self._pos = 0
            return True
        return False

    def _finish(self) -> None:
        os.close(self._fd)
        self._fd = -1
        self._done = self._start
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.directory / segment_name(self._start))

    def pending(self) -> int:
        """Bytes spooled and not read yet (from the files' sizes)."""
        total = 0
        first = self._start if self._fd >= 0 else self._done + 1
        for start, path in segment_paths(self.directory):
            if start < first:
                continue
            if start == self._start and self._fd >= 0:
                total += os.fstat(self._fd).st_size - self._pos
                continue
            with contextlib.suppress(FileNotFoundError):
                total += path.stat().st_size
        return total

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
