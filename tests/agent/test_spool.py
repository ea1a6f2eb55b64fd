"""The spool between the drain process and the decoder: records in the ring buffer's own
format go to segment files and come back whole, in order, within a disk bound; the drain
process leaves in the ring what the spool refuses."""

from __future__ import annotations

import itertools
import json
import os
import random
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
from agent.ringbuf import (
    BUSY,
    DISCARD,
    HDR,
    CommittedCount,
    RingBufferReader,
    iter_records,
    whole_prefix,
)
from agent.spool import SpoolReader, SpoolWriter, segment_paths

REPO = Path(__file__).resolve().parents[2]


# ---- ring-buffer-format bytes ----


def record(payload: bytes, discard: bool = False) -> bytes:
    word = len(payload) | (DISCARD if discard else 0)
    return struct.pack("<II", word, 0) + payload + bytes(-len(payload) % 8)


def numbered(i: int, spread: int = 37) -> bytes:
    """A payload that says which record it is and how long it must be (4..spread+3 bytes)."""
    return struct.pack("<I", i) + bytes([i % 251]) * (i * 7 % spread)


def check_numbered(p: memoryview | bytes, spread: int = 37) -> int:
    i = int(struct.unpack_from("<I", p)[0])
    assert bytes(p) == numbered(i, spread), f"record {i} is not whole"
    return i


def read_all(reader: SpoolReader, max_bytes: int = 64 << 20) -> list[bytes]:
    return [bytes(p) for p in reader.read(max_bytes)]


@pytest.fixture
def spool_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="nodetap-spool-") as d:
        yield Path(d) / "spool"


# ---- the record walk ----


def test_iter_records_stops_at_a_truncated_tail() -> None:
    payloads = [b"", b"a", b"abcdefg", b"abcdefgh", b"x" * 13, b"y" * 30]
    recs = [record(p, discard=(i == 2)) for i, p in enumerate(payloads)]
    blob = b"".join(recs)
    bounds = [sum(len(r) for r in recs[:k]) for k in range(len(recs) + 1)]
    for cut in range(len(blob) + 1):
        whole = max(b for b in bounds if b <= cut)
        assert whole_prefix(blob[:cut]) == whole
        k = bounds.index(whole)
        want = [p for i, p in enumerate(payloads[:k]) if i != 2]
        assert [bytes(p) for p in iter_records(memoryview(blob)[:cut])] == want


def test_iter_records_stops_at_a_busy_record() -> None:
    busy = struct.pack("<II", 5 | BUSY, 0) + b"hello" + bytes(3)
    blob = record(b"one") + busy + record(b"two")
    assert [bytes(p) for p in iter_records(memoryview(blob))] == [b"one"]
    assert whole_prefix(blob) == HDR + 8


# ---- writer and reader ----


def test_round_trip_skips_discarded_records(spool_dir: Path) -> None:
    writer = SpoolWriter(spool_dir, max_bytes=1 << 20)
    reader = SpoolReader(spool_dir)
    assert reader.pending() == 0
    assert read_all(reader) == []
    extents = [
        record(b"GET / HTTP/1.1\r\n") + record(b"dropped", discard=True) + record(b"abc"),
        record(b""),
        record(b"x" * 1001) + record(b"y" * 9, discard=True),
    ]
    for e in extents:
        assert writer.append(e)
    total = sum(len(e) for e in extents)
    assert (writer.bytes_written, writer.extents, writer.refusals) == (total, 3, 0)
    assert reader.pending() == total
    assert read_all(reader) == [b"GET / HTTP/1.1\r\n", b"abc", b"", b"x" * 1001]
    assert reader.pending() == 0
    assert reader.bytes_read == total
    assert read_all(reader) == []
    assert writer.append(record(b"later"))
    assert reader.pending() == 16
    assert read_all(reader) == [b"later"]
    writer.close()
    reader.close()


def test_segment_names_are_spool_offsets(spool_dir: Path) -> None:
    writer = SpoolWriter(spool_dir, max_bytes=1 << 20, segment_bytes=100)
    for i in range(40):
        assert writer.append(record(numbered(i)))
    segs = segment_paths(spool_dir)
    assert len(segs) > 5
    assert segs[0][0] == 0
    for (start, path), (nxt, _) in itertools.pairwise(segs):
        assert path.name == f"{start:016x}.seg"
        assert nxt == start + path.stat().st_size
        assert path.stat().st_size >= 100  # rotated only once complete
    assert segs[-1][0] + segs[-1][1].stat().st_size == writer.bytes_written
    writer.close()


def test_rotation_with_interleaved_reads(spool_dir: Path) -> None:
    rng = random.Random(7)
    writer = SpoolWriter(spool_dir, max_bytes=1 << 20, segment_bytes=128)
    reader = SpoolReader(spool_dir)
    expected: list[int] = []
    got: list[int] = []
    seq = 0
    for _ in range(600):
        recs = []
        for _ in range(rng.randint(1, 10)):
            discard = seq % 7 == 3
            recs.append(record(numbered(seq), discard=discard))
            if not discard:
                expected.append(seq)
            seq += 1
        assert writer.append(b"".join(recs))
        if rng.random() < 0.4:
            # small budgets too: a read stops between records, never inside one
            got += [check_numbered(p) for p in reader.read(rng.randint(1, 300))]
            assert got == expected[: len(got)]
            assert reader.pending() == writer.bytes_written - reader.bytes_read
            # what has been read is gone from the disk, except the newest segment
            segs = segment_paths(spool_dir)
            assert segs[0][0] + segs[0][1].stat().st_size > reader.bytes_read or len(segs) == 1
    for _ in range(100_000):  # a read may yield nothing: only discarded records
        if not reader.pending():
            break
        got += [check_numbered(p) for p in reader.read(rng.randint(1, 300))]
    assert got == expected
    assert reader.pending() == 0
    segs = segment_paths(spool_dir)
    assert len(segs) == 1  # the newest, which the writer may still append to
    assert writer.bytes_written > 500 * 128
    writer.close()
    reader.close()


def test_bound_refuses_then_accepts_once_read(spool_dir: Path) -> None:
    writer = SpoolWriter(spool_dir, max_bytes=1024, segment_bytes=256)
    reader = SpoolReader(spool_dir)
    ext = record(b"a" * 56) + record(b"b" * 50)  # 128 bytes
    assert len(ext) == 128
    for _ in range(8):
        assert writer.append(ext)
    sizes = {p.name: p.stat().st_size for _, p in segment_paths(spool_dir)}
    assert not writer.append(ext)
    assert not writer.append(record(b"tiny"))
    assert (writer.bytes_written, writer.extents, writer.refusals) == (1024, 8, 2)
    assert {p.name: p.stat().st_size for _, p in segment_paths(spool_dir)} == sizes
    assert writer.usage() == 1024
    assert reader.pending() == 1024
    # one segment (256 bytes) read and deleted: room for two extents, not three
    assert read_all(reader, 300) == [b"a" * 56, b"b" * 50] * 2
    assert reader.pending() == 768
    assert writer.usage() == 768
    assert writer.append(ext)
    assert writer.append(ext)
    assert not writer.append(ext)
    assert writer.refusals == 3
    assert read_all(reader) == [b"a" * 56, b"b" * 50] * 8
    assert reader.pending() == 0
    assert writer.usage() < 256
    writer.close()
    reader.close()


def test_reader_waits_for_a_half_written_tail(spool_dir: Path) -> None:
    spool_dir.mkdir()
    reader = SpoolReader(spool_dir)
    ext = record(b"A" * 13) + record(b"B" * 5, discard=True) + record(b"C" * 30) + record(b"")
    a, b, c = 8 + 16, 8 + 8, 8 + 32
    path = spool_dir / f"{0:016x}.seg"
    with open(path, "ab", buffering=0) as f:
        f.write(ext[: a + b + 20])  # in the middle of C's payload
        assert read_all(reader) == [b"A" * 13]
        assert reader.pending() == 20  # the discarded B is read (and skipped) already
        assert read_all(reader) == []
        f.write(ext[a + b + 20 : a + b + c + 4])  # in the middle of the last header
        assert read_all(reader) == [b"C" * 30]
        assert reader.pending() == 4
        f.write(ext[a + b + c + 4 :])
        assert read_all(reader) == [b""]
        assert reader.pending() == 0
    # the same with the writer appending after the hand-written extent
    writer = SpoolWriter(spool_dir, max_bytes=1 << 20)
    assert writer.append(record(b"D"))
    assert read_all(reader) == [b"D"]
    writer.close()
    reader.close()


def test_reader_skips_an_uncommitted_extent(spool_dir: Path) -> None:
    """An extent in the file with BUSY still set in its first header is being written."""
    spool_dir.mkdir()
    reader = SpoolReader(spool_dir)
    ext = record(b"one") + record(b"two")
    path = spool_dir / f"{0:016x}.seg"
    path.write_bytes(struct.pack("<I", 3 | BUSY) + ext[4:])
    assert read_all(reader) == []
    assert reader.pending() == len(ext)
    with open(path, "r+b") as f:
        f.write(ext[:4])
    assert read_all(reader) == [b"one", b"two"]


def test_torn_extent_of_a_killed_writer_is_dropped(spool_dir: Path) -> None:
    first = SpoolWriter(spool_dir, max_bytes=1 << 20)
    assert first.append(record(b"before"))
    first.close()
    # the writer was killed in the middle of its next extent
    torn = struct.pack("<II", 20 | BUSY, 0) + b"partial"
    with open(spool_dir / f"{0:016x}.seg", "ab") as f:
        f.write(torn)
    reader = SpoolReader(spool_dir)
    assert read_all(reader) == [b"before"]
    second = SpoolWriter(spool_dir, max_bytes=1 << 20)
    assert second.append(record(b"after"))
    assert read_all(reader) == [b"after"]
    assert reader.discarded_bytes == len(torn)
    assert [p.name for _, p in segment_paths(spool_dir)] == [f"{16 + len(torn):016x}.seg"]
    second.close()
    reader.close()


CONCURRENT_WRITER = """
import json, random, sys, time
from pathlib import Path
from agent.spool import SpoolWriter
from tests.agent.test_spool import numbered, record
total, spread = int(sys.argv[2]), int(sys.argv[3])
w = SpoolWriter(Path(sys.argv[1]), max_bytes=256 << 10, segment_bytes=16 << 10)
rng = random.Random(3)
seq = 0
while seq < total:
    k = min(rng.randint(1, 60), total - seq)
    ext = b"".join(record(numbered(i, spread)) for i in range(seq, seq + k))
    while not w.append(ext):  # full: wait for the reader
        time.sleep(0.0002)
    seq += k
print(json.dumps({"bytes": w.bytes_written, "refusals": w.refusals}))
"""


def test_concurrent_writer_process(spool_dir: Path) -> None:
    """A writer process against a reader that deletes behind it, with the bound hit often:
    every record once, whole, in order, and the disk usage stays within the bound."""
    total, spread = 20_000, 3001
    writer = subprocess.Popen(
        [sys.executable, "-c", CONCURRENT_WRITER, str(spool_dir), str(total), str(spread)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        reader = SpoolReader(spool_dir)
        rng = random.Random(5)
        got: list[int] = []
        deadline = time.monotonic() + 120
        while len(got) < total:
            assert time.monotonic() < deadline, f"{len(got)} records read"
            batch = [check_numbered(p, spread) for p in reader.read(rng.randint(1, 256 << 10))]
            assert batch == list(range(len(got), len(got) + len(batch)))
            got += batch
            if not batch:
                time.sleep(0.001)
            on_disk = sum(p.stat().st_size for _, p in segment_paths(spool_dir))
            assert on_disk <= 256 << 10
        out, err = writer.communicate(timeout=60)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.wait()
    assert writer.returncode == 0, err
    counters = json.loads(out)
    assert counters["refusals"] > 0  # the bound was reached
    assert reader.bytes_read == counters["bytes"]
    assert reader.discarded_bytes == 0
    assert reader.pending() == 0
    assert len(segment_paths(spool_dir)) == 1
    reader.close()


WRITER_UNDER_RLIMIT = """
import json, resource, signal, sys
from pathlib import Path
from agent.spool import SpoolWriter
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
w = SpoolWriter(Path(sys.argv[1]), max_bytes=1 << 20)
ok = [w.append(bytes.fromhex(h)) for h in sys.argv[2:]]
e = w.last_error
print(json.dumps({"ok": ok, "errno": e and e.errno, "write_errors": w.write_errors,
                  "refusals": w.refusals, "bytes": w.bytes_written}))
"""


def test_failed_write_leaves_no_partial_extent(spool_dir: Path) -> None:
    """A write that fails halfway (here: the file size limit, EFBIG after a short write;
    ENOSPC takes the same path) is taken back whole."""
    big = b"".join(record(numbered(i)) for i in range(9))
    small = record(numbered(100)) + record(numbered(101))
    assert len(big) * 3 < 1000 < len(big) * 4 and len(big) * 3 + len(small) <= 1000
    r = subprocess.run(
        [sys.executable, "-c", WRITER_UNDER_RLIMIT, str(spool_dir)]
        + [e.hex() for e in (big, big, big, big, small)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["ok"] == [True, True, True, False, True]
    assert out["errno"] == 27  # EFBIG
    assert (out["write_errors"], out["refusals"]) == (1, 1)
    assert out["bytes"] == 3 * len(big) + len(small)
    (seg,) = segment_paths(spool_dir)
    assert seg[1].stat().st_size == out["bytes"]
    reader = SpoolReader(spool_dir)
    got = [check_numbered(p) for p in reader.read()]
    assert got == list(range(9)) * 3 + [100, 101]
    assert reader.discarded_bytes == 0
    reader.close()


# ---- the drain process ----


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
        reader = SpoolReader(spool_dir)
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
    reader = SpoolReader(spool_dir)
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
        reader = SpoolReader(spool_dir)
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
