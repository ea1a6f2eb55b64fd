"""The forwarder sink's outbox: batches kept on disk until the forwarder acknowledges them.

A bounded directory of opaque records (the sink's ``--spool-dir``), written when the memory
queue is full or the forwarder is away, and read back by the next run.

Segment files ``spool-<n>.seg`` hold records ``b"NTSP" | u32 length | u32 crc32 | payload``
(little endian). A segment is deleted once every record in it is released (acknowledged).
On start, ``recover()`` returns the records left by an earlier run; a corrupt record (torn
write, flipped bits) is skipped and counted, and the scan resynchronises on the next record,
so nothing else is lost.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

MAGIC = b"NTSP"
_HEADER = struct.Struct("<4sII")
_SEG_RE = re.compile(r"^spool-(\d{8})\.seg$")


@dataclass(frozen=True, slots=True)
class OutboxRef:
    """Where one record lives."""

    segment: int
    offset: int  # of the payload
    length: int


class OutboxBusy(OSError):
    """Another process holds the outbox directory."""


class Outbox:
    """Append records up to max_bytes on disk; read them back; release them when done."""

    def __init__(self, directory: str, max_bytes: int, segment_bytes: int | None = None) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # batches waiting here are captured traffic: readable by the agent's user only
        if self.dir.stat().st_uid == os.geteuid():
            os.chmod(self.dir, 0o700)
        # One agent per outbox: a second one would resend and delete the first one's records.
        self._lock_fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise OutboxBusy(f"spool dir {directory} is in use by another process") from None
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes or max(64 * 1024, max_bytes // 8)
        self.corrupt = 0  # records skipped as corrupt during recover()
        self._live: dict[int, int] = {}  # segment -> records not yet released
        self._sizes: dict[int, int] = {}  # segment -> bytes on disk
        self._fd: int | None = None
        self._active = -1

    # -- sizes --------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return sum(self._sizes.values())

    def _path(self, seg: int) -> Path:
        return self.dir / f"spool-{seg:08d}.seg"

    # -- recovery -----------------------------------------------------------------------------
    def recover(self) -> list[tuple[OutboxRef, bytes]]:
        """Records left in the directory by an earlier run, oldest first."""
        found: list[tuple[OutboxRef, bytes]] = []
        segs = sorted(int(m.group(1)) for p in self.dir.iterdir() if (m := _SEG_RE.match(p.name)))
        for seg in segs:
            data = self._path(seg).read_bytes()
            records = self._scan(seg, data)
            self._sizes[seg] = len(data)
            self._live[seg] = len(records)
            found.extend(records)
            if not records:
                self._drop_segment(seg)
        self._active = segs[-1] if segs else -1
        if self.corrupt:
            log.warning("spool %s: skipped %d corrupt record(s)", self.dir, self.corrupt)
        return found

    def _scan(self, seg: int, data: bytes) -> list[tuple[OutboxRef, bytes]]:
        out: list[tuple[OutboxRef, bytes]] = []
        pos, n = 0, len(data)
        in_bad = False  # inside a corrupt stretch (counted once)
        while pos + _HEADER.size <= n:
            magic, length, crc = _HEADER.unpack_from(data, pos)
            start, end = pos + _HEADER.size, pos + _HEADER.size + length
            if magic == MAGIC and end <= n and zlib.crc32(data[start:end]) == crc:
                out.append((OutboxRef(seg, start, length), data[start:end]))
                pos, in_bad = end, False
                continue
            if not in_bad:
                self.corrupt += 1
                in_bad = True
            # A record with a sound header but a bad payload ends where the next one starts.
            if magic == MAGIC and end <= n and (end == n or data[end : end + 4] == MAGIC):
                pos = end
                continue
            nxt = data.find(MAGIC, pos + 1)
            if nxt < 0:
                break
            pos = nxt
        else:
            if pos < n and not in_bad:
                self.corrupt += 1  # a torn header at the end
        return out

    # -- writing ------------------------------------------------------------------------------
    def write(self, payload: bytes) -> OutboxRef | None:
        """Append one record; None (nothing written) when the outbox would exceed its bound."""
        rec = _HEADER.size + len(payload)
        if self.size + rec > self.max_bytes:
            return None
        if self._fd is None or self._sizes.get(self._active, 0) + rec > self.segment_bytes:
            self._rotate()
        assert self._fd is not None
        offset = self._sizes[self._active]
        os.write(self._fd, _HEADER.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload)
        self._sizes[self._active] = offset + rec
        self._live[self._active] = self._live.get(self._active, 0) + 1
        return OutboxRef(self._active, offset + _HEADER.size, len(payload))

    def _rotate(self) -> None:
        old = self._active
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            if self._live.get(old, 0) == 0:
                self._drop_segment(old)
        self._active = old + 1
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        self._fd = os.open(self._path(self._active), flags, 0o600)
        self._sizes[self._active] = 0
        self._live[self._active] = 0

    def read(self, ref: OutboxRef) -> bytes:
        with open(self._path(ref.segment), "rb") as fp:
            fp.seek(ref.offset)
            return fp.read(ref.length)

    def release(self, ref: OutboxRef) -> None:
        """The record is no longer needed (acknowledged)."""
        left = self._live.get(ref.segment, 0) - 1
        self._live[ref.segment] = left
        if left <= 0 and (ref.segment != self._active or self._fd is None):
            self._drop_segment(ref.segment)
        elif left <= 0 and ref.segment == self._active:
            # The active segment is empty: start it over instead of growing it.
            assert self._fd is not None
            os.ftruncate(self._fd, 0)
            self._sizes[ref.segment] = 0

    def _drop_segment(self, seg: int) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(seg).unlink()
        self._live.pop(seg, None)
        self._sizes.pop(seg, None)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
            if self._live.get(self._active, 0) == 0:
                self._drop_segment(self._active)
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = -1
