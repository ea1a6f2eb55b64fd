"""The drain process (agent/spool_drain.py): copies a real ring buffer into the ring spool, and
leaves in the ring what the spool refuses."""

from __future__ import annotations

import json
import os
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from agent import spool_drain
from agent.bpf_syscall import possible_cpus
from agent.ring_spool import RingSpoolReader
from agent.ringbuf import (
    CommittedCount,
    RingBufferReader,
    iter_records,
)
from tests.agent.ring_records import REPO, record


def drain_cmd(ring_fd: int, ring_size: int, spool: Path, max_bytes: int, *extra: str) -> list[str]:
    return spool_drain.command(
        ring_fd, ring_size, spool, max_bytes, "--poll-interval=0.002", *extra
    )


def start_drain(fd: int, size: int, spool: Path, max_bytes: int) -> subprocess.Popen[str]:
    """A drain process on the test's ring, with this process as its parent."""
    return subprocess.Popen(
        drain_cmd(fd, size, spool, max_bytes, "--parent", str(os.getpid())),
        cwd=REPO,
        pass_fds=(fd,),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def one_line_error(r: subprocess.CompletedProcess[str], code: int, needle: str) -> None:
    assert r.returncode == code, r.stderr
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert r.stdout == ""


def run_drain(cmd: list[str], pass_fds: tuple[int, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, timeout=60, pass_fds=pass_fds
    )


def test_drain_bad_fd(spool_dir: Path) -> None:
    one_line_error(run_drain(drain_cmd(999, 4096, spool_dir, 1 << 20)), 2, "fd 999 is not open")
    with tempfile.TemporaryFile() as f:
        f.truncate(1 << 20)
        r = run_drain(drain_cmd(f.fileno(), 4096, spool_dir, 1 << 20), pass_fds=(f.fileno(),))
    one_line_error(r, 2, "not a BPF map")
    assert not spool_dir.exists()


def test_drain_exits_when_the_parent_is_gone(spool_dir: Path) -> None:
    # --parent names a process that is not our parent: as if it had died before we ran
    cmd = drain_cmd(999, 4096, spool_dir, 1 << 20, "--parent", "1")
    one_line_error(run_drain(cmd), 1, "parent process is gone")
    spool_dir.mkdir()
    (spool_dir / f"{0:016x}.seg").write_bytes(record(b"left over"))
    one_line_error(run_drain([*cmd, "--remove-dir-if-orphaned"]), 1, "parent process is gone")
    assert not spool_dir.exists()


BPF_TEXT = """
struct rec {
    u32 seq;
    u64 ts;
} __attribute__((packed));

BPF_RINGBUF_OUTPUT(events, RING_PAGES);
BPF_ARRAY(seqno, u32, 1);
/* as bpf/common.h counts ring_committed */
BPF_F_TABLE("array", u32, u64, committed, NCPUS * 8, BPF_F_MMAPABLE);

TRACEPOINT_PROBE(syscalls, sys_enter_getppid) {
    if ((bpf_get_current_pid_tgid() >> 32) != TGID)
        return 0;
    int zero = 0;
    u32 *s = seqno.lookup(&zero);
    if (!s)
        return 0;
    struct rec r = {};
    r.seq = *s;  /* one thread triggers: no need for an atomic add */
    *s = r.seq + 1;
    r.ts = bpf_ktime_get_ns();
    if (events.ringbuf_output(&r, sizeof(r), 0) == 0) {
        u32 slot = bpf_get_smp_processor_id() * 8;
        u64 *c = committed.lookup(&slot);
        if (c)
            __sync_fetch_and_add(c, 24);
    }
    return 0;
}
"""
RING_PAGES = 4
REC_SIZE = 12  # payload; 24 bytes in the ring


@pytest.fixture
def counted_ring() -> Iterator[tuple[int, int, int]]:
    """A real BPF ring buffer fed one 12-byte record per getppid() of this process: its
    fd, its size and the fd of the per-CPU count of its committed bytes."""
    from bcc import BPF

    cflags = [f"-DTGID={os.getpid()}", f"-DRING_PAGES={RING_PAGES}", f"-DNCPUS={possible_cpus()}"]
    b = BPF(text=BPF_TEXT.encode(), cflags=cflags)
    try:
        yield (
            int(b[b"events"].map_fd),
            RING_PAGES * os.sysconf("SC_PAGE_SIZE"),
            int(b[b"committed"].map_fd),
        )
    finally:
        b.cleanup()


@pytest.fixture
def ring(counted_ring: tuple[int, int, int]) -> tuple[int, int]:
    return counted_ring[:2]


def trigger(n: int) -> None:
    for _ in range(n):
        os.getppid()


def seqs(payloads: Iterator[memoryview]) -> list[int]:
    out = []
    for p in payloads:
        assert len(p) == REC_SIZE
        out.append(int(struct.unpack_from("<I", p)[0]))
    return out


def wait_for(cond: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def read_line(stream: IO[str], timeout: float = 30) -> str:
    ready, _, _ = select.select([stream], [], [], timeout)
    assert ready, "timed out waiting for a line"
    return stream.readline()


def stop(proc: subprocess.Popen[str]) -> tuple[dict[str, int], str]:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    lines = out.splitlines()
    assert len(lines) == 1, out
    return json.loads(lines[0]), err


@pytest.mark.bpf
def test_drain_process_spools_a_real_ring(ring: tuple[int, int], spool_dir: Path) -> None:
    fd, size = ring
    one_line_error(
        run_drain(drain_cmd(fd, size * 2, spool_dir, 1 << 20), pass_fds=(fd,)), 2, "bytes, not"
    )
    trigger(50)  # before the drain runs: they wait in the ring
    proc = start_drain(fd, size, spool_dir, 1 << 20)
    try:
        reader = RingSpoolReader(spool_dir)
        wait_for(lambda: reader.pending() == 50 * 24)
        trigger(30)  # spooled by the loop or by the last drain after SIGTERM
        counters, err = stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert err == ""
    assert counters["bytes"] == 80 * 24
    assert counters["extents"] >= 2
    assert counters["refusals"] == 0
    assert seqs(reader.read()) == list(range(80))
    assert reader.pending() == 0
    reader.close()
    ringreader = RingBufferReader(fd, size)
    assert ringreader.pending() == 0  # consumed by the drain process
    ringreader.close()


@pytest.mark.bpf
def test_drain_process_leaves_refused_records_in_the_ring(
    ring: tuple[int, int], spool_dir: Path
) -> None:
    fd, size = ring
    trigger(10)
    # a bound smaller than one record (24 bytes): the spool refuses everything
    proc = start_drain(fd, size, spool_dir, 16)
    try:
        assert proc.stderr is not None
        line = read_line(proc.stderr)
        assert line.startswith("nodetap: spool full (")
        assert "records wait in the ring buffer" in line
        trigger(5)
        time.sleep(0.05)
        counters, err = stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert err == ""  # one warning per episode: the one line already read
    assert counters["refusals"] > 0
    assert counters["bytes"] == counters["extents"] == 0
    reader = RingSpoolReader(spool_dir)
    assert list(reader.read()) == []
    reader.close()
    ringreader = RingBufferReader(fd, size)
    assert ringreader.pending() == 15 * 24
    peeked = ringreader.peek_extent(60)
    assert peeked is not None
    blob, end = peeked
    assert len(blob) == 48  # whole records within the limit
    assert seqs(iter_records(memoryview(blob))) == [0, 1]
    assert ringreader.peek_extent(60) == peeked  # not consumed
    ringreader.release(end)
    assert ringreader.pending() == 13 * 24
    with pytest.raises(ValueError):
        ringreader.release(end - 8)  # behind the consumer position
    one = ringreader.read_extent(8)  # a limit below one record: that record
    assert one is not None and len(one) == 24
    assert seqs(iter_records(memoryview(one))) == [2]
    assert seqs(ringreader.read()) == list(range(3, 15))
    assert ringreader.read_extent() is None
    ringreader.close()


ORPHANING_PARENT = """
import os, subprocess, sys, time
from pathlib import Path
fd, cmd = int(sys.argv[1]), sys.argv[2:]
cmd += ["--parent", str(os.getpid()), "--remove-dir-if-orphaned"]
p = subprocess.Popen(cmd, pass_fds=(fd,), stdout=subprocess.DEVNULL)
print(p.pid, flush=True)
spool = Path(cmd[cmd.index("--dir") + 1])
while not spool.exists():  # made after PR_SET_PDEATHSIG
    time.sleep(0.01)
# and exit without ending it
"""


def process_gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


@pytest.mark.bpf
def test_drain_process_ends_with_its_parent(ring: tuple[int, int], spool_dir: Path) -> None:
    fd, size = ring
    parent = subprocess.Popen(
        [sys.executable, "-c", ORPHANING_PARENT, str(fd), *drain_cmd(fd, size, spool_dir, 4096)],
        cwd=REPO,
        pass_fds=(fd,),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert parent.stdout is not None
    pid = int(read_line(parent.stdout))
    try:
        assert parent.wait(timeout=30) == 0
        wait_for(lambda: process_gone(pid) and not spool_dir.exists())
    finally:
        if not process_gone(pid) and b"spool_drain" in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGKILL)
        if parent.poll() is None:
            parent.kill()
        _, err = parent.communicate(timeout=30)
    assert "Traceback" not in err


@pytest.mark.bpf
def test_reader_skips_the_walk_only_when_every_record_is_committed(
    counted_ring: tuple[int, int, int],
) -> None:
    fd, size, committed_fd = counted_ring
    count = CommittedCount(committed_fd)
    trigger(20)
    assert count() == 20 * 24
    reader = RingBufferReader(fd, size, count)
    assert seqs(reader.read()) == list(range(20))
    assert reader.unwalked == 1
    # a count behind the producer position: as if a record were still being written
    trigger(5)
    behind = RingBufferReader(fd, size, lambda: count() - 24)
    assert seqs(behind.read()) == list(range(20, 25))  # the headers say all are committed
    assert behind.unwalked == 0
    behind.close()
    # longer than max_bytes: whole records only, found by the walk
    trigger(5)
    got = reader.peek_extent(60)
    assert got is not None and len(got[0]) == 48
    assert reader.unwalked == 1
    reader.release(got[1])
    assert seqs(reader.read()) == [27, 28, 29]
    assert reader.unwalked == 2
    reader.close()
    count.close()


@pytest.mark.bpf
def test_drain_process_uses_the_committed_count(
    counted_ring: tuple[int, int, int], spool_dir: Path
) -> None:
    fd, size, committed_fd = counted_ring
    cmd = drain_cmd(fd, size, spool_dir, 1 << 20, f"--committed-fd={fd}")
    one_line_error(run_drain(cmd, pass_fds=(fd,)), 2, "not an array")
    trigger(40)
    cmd = drain_cmd(fd, size, spool_dir, 1 << 20, f"--committed-fd={committed_fd}")
    proc = subprocess.Popen(
        [*cmd, "--parent", str(os.getpid())],
        cwd=REPO,
        pass_fds=(fd, committed_fd),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        reader = RingSpoolReader(spool_dir)
        wait_for(lambda: reader.pending() == 40 * 24)
        counters, err = stop(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert err == ""
    assert counters["bytes"] == 40 * 24
    assert counters["unwalked"] >= 1
    assert seqs(reader.read()) == list(range(40))
    reader.close()
