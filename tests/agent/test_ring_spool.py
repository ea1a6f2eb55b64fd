"""The ring spool between the drain process and the decoder: records in the ring buffer's own
format go to segment files and come back whole, in order, within a disk bound."""

from __future__ import annotations

import itertools
import json
import random
import struct
import subprocess
import sys
import time
from pathlib import Path

from agent.ring_spool import RingSpoolReader, RingSpoolWriter, segment_paths
from agent.ringbuf import (
    BUSY,
    HDR,
    iter_records,
    whole_prefix,
)
from tests.agent.ring_records import REPO, check_numbered, numbered, read_all, record

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
    writer = RingSpoolWriter(spool_dir, max_bytes=1 << 20)
    reader = RingSpoolReader(spool_dir)
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
    writer = RingSpoolWriter(spool_dir, max_bytes=1 << 20, segment_bytes=100)
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
    writer = RingSpoolWriter(spool_dir, max_bytes=1 << 20, segment_bytes=128)
    reader = RingSpoolReader(spool_dir)
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
    writer = RingSpoolWriter(spool_dir, max_bytes=1024, segment_bytes=256)
    reader = RingSpoolReader(spool_dir)
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
    reader = RingSpoolReader(spool_dir)
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
    writer = RingSpoolWriter(spool_dir, max_bytes=1 << 20)
    assert writer.append(record(b"D"))
    assert read_all(reader) == [b"D"]
    writer.close()
    reader.close()


def test_reader_skips_an_uncommitted_extent(spool_dir: Path) -> None:
    """An extent in the file with BUSY still set in its first header is being written."""
    spool_dir.mkdir()
    reader = RingSpoolReader(spool_dir)
    ext = record(b"one") + record(b"two")
    path = spool_dir / f"{0:016x}.seg"
    path.write_bytes(struct.pack("<I", 3 | BUSY) + ext[4:])
    assert read_all(reader) == []
    assert reader.pending() == len(ext)
    with open(path, "r+b") as f:
        f.write(ext[:4])
    assert read_all(reader) == [b"one", b"two"]


def test_torn_extent_of_a_killed_writer_is_dropped(spool_dir: Path) -> None:
    first = RingSpoolWriter(spool_dir, max_bytes=1 << 20)
    assert first.append(record(b"before"))
    first.close()
    # the writer was killed in the middle of its next extent
    torn = struct.pack("<II", 20 | BUSY, 0) + b"partial"
    with open(spool_dir / f"{0:016x}.seg", "ab") as f:
        f.write(torn)
    reader = RingSpoolReader(spool_dir)
    assert read_all(reader) == [b"before"]
    second = RingSpoolWriter(spool_dir, max_bytes=1 << 20)
    assert second.append(record(b"after"))
    assert read_all(reader) == [b"after"]
    assert reader.discarded_bytes == len(torn)
    assert [p.name for _, p in segment_paths(spool_dir)] == [f"{16 + len(torn):016x}.seg"]
    second.close()
    reader.close()


CONCURRENT_WRITER = """
import json, random, sys, time
from pathlib import Path
from agent.ring_spool import RingSpoolWriter
from tests.agent.ring_records import numbered, record
total, spread = int(sys.argv[2]), int(sys.argv[3])
w = RingSpoolWriter(Path(sys.argv[1]), max_bytes=256 << 10, segment_bytes=16 << 10)
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
        reader = RingSpoolReader(spool_dir)
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
from agent.ring_spool import RingSpoolWriter
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))
w = RingSpoolWriter(Path(sys.argv[1]), max_bytes=1 << 20)
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
    reader = RingSpoolReader(spool_dir)
    got = [check_numbered(p) for p in reader.read()]
    assert got == list(range(9)) * 3 + [100, 101]
    assert reader.discarded_bytes == 0
    reader.close()


# ---- the drain process ----
