"""agent/sendfile_bodies.py: a sendfile range read back from the file the sender opened,
through the sender's own fd when it still names that file, never from a file changed
since the send or too short to hold the range. The sender here is this process."""

from __future__ import annotations

import os
import time
from pathlib import Path

from agent import bpf_layout as L
from agent.sendfile_bodies import FileRanges, SendfileRecord

DATA = bytes(range(256)) * 64  # 16 KiB


def record(path: bytes, fd: int, off: int, n: int, dirfd: int = L.NT_AT_FDCWD) -> SendfileRecord:
    return SendfileRecord(0, n, 1, 0, 0, os.getpid(), off, fd, dirfd, path)


def later() -> int:
    return time.time_ns() + 1_000_000_000


def test_the_record_unpacks_as_the_kernel_writes_it() -> None:
    ev = L.NtSendfileEvent(kind=L.NT_EV_SENDFILE, len=5, conn_id=7, offset=9, tgid=11)
    ev.file_off, ev.in_fd, ev.dirfd, ev.path = 13, 4, -100, b"/srv/a.bin"
    ev.path_len = len(b"/srv/a.bin") + 1
    r = SendfileRecord.unpack(memoryview(bytes(ev)))
    assert (r.length, r.conn_id, r.offset, r.tgid, r.file_off) == (5, 7, 9, 11, 13)
    assert (r.in_fd, r.dirfd, r.path) == (4, -100, b"/srv/a.bin")


def test_a_range_of_an_open_file_by_absolute_path(tmp_path: Path) -> None:
    f = tmp_path / "a.bin"
    f.write_bytes(DATA)
    fd = os.open(f, os.O_RDONLY)
    try:
        got = FileRanges(1 << 20).read(record(os.fsencode(f), fd, 100, 5000), later())
    finally:
        os.close(fd)
    assert got == DATA[100:5100]


def test_a_closed_fd_falls_back_on_the_path_and_the_bound_cuts(tmp_path: Path) -> None:
    f = tmp_path / "a.bin"
    f.write_bytes(DATA)
    got = FileRanges(1000).read(record(os.fsencode(f), 999_999, 0, len(DATA)), later())
    assert got == DATA[:1000]


def test_a_relative_path_resolves_under_the_working_directory(tmp_path: Path) -> None:
    f = tmp_path / "rel.bin"
    f.write_bytes(DATA)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        got = FileRanges(1 << 20).read(record(b"rel.bin", 999_999, 10, 10), later())
    finally:
        os.chdir(cwd)
    assert got == DATA[10:20]


def test_an_fd_that_names_another_file_now_leaves_the_path(tmp_path: Path) -> None:
    # nothing in the record says which file the fd named at the send: another file
    # under it is taken for a reused fd (nginx opens the next file at the same number),
    # and the path stands, guarded by its ctime
    f = tmp_path / "a.bin"
    f.write_bytes(DATA)
    fd = os.open(f, os.O_RDONLY)
    try:
        f.unlink()
        f.write_bytes(b"new" * 6000)  # another inode under the same name
        got = FileRanges(1 << 20).read(record(os.fsencode(f), fd, 0, 64), later())
        assert got is not None
        # a send before the new file's ctime: not read
        sent_before_change = time.time_ns() - 10_000_000_000
        stale = FileRanges(1 << 20).read(record(os.fsencode(f), fd, 0, 64), sent_before_change)
    finally:
        os.close(fd)
    assert got == b"new" * 21 + b"n"
    assert stale is None


def test_a_file_changed_after_the_send_or_too_short_is_not_read(tmp_path: Path) -> None:
    f = tmp_path / "a.bin"
    f.write_bytes(DATA)
    before = time.time_ns() - 10_000_000_000
    r = FileRanges(1 << 20)
    assert r.read(record(os.fsencode(f), 999_999, 0, 100), before) is None
    assert r.read(record(os.fsencode(f), 999_999, len(DATA) - 10, 100), later()) is None
    assert r.read(record(b"", 999_999, 0, 100), later()) is None
    r.close()
