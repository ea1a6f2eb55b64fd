"""Damaged and hostile input: truncated and corrupt files, garbage, wrong link types,
absurd lengths, random mutations, a million tiny flows."""

from __future__ import annotations

import gc
import random
import struct
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from agent.packet.decode import LinkType, Malformed, NotTcp, decode
from agent.packet.importer import import_pcap
from agent.packet.pcapfile import PcapReader
from agent.packet.pipeline import PacketPipeline
from nodetap.v1 import rrpair_pb2 as pb
from tests.packet.conftest import LoCapture
from tests.packet.oracle import PyPacketPipeline
from tests.packet.support import read_frames, write_frames

REPO = Path(__file__).resolve().parents[2]


def _import(path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", "import", str(path), *extra],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )


@pytest.mark.root
def test_truncated_pcap_keeps_what_was_readable(lo_capture: LoCapture, tmp_path: Path) -> None:
    data = lo_capture.eth.read_bytes()
    full = _import(lo_capture.eth)
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) * 6 // 10])
    proc = _import(cut)
    assert proc.returncode == 0, proc.stderr
    assert "truncated at byte" in proc.stderr and "kept what came before it" in proc.stderr
    n_cut, n_full = len(proc.stdout.splitlines()), len(full.stdout.splitlines())
    assert 0 < n_cut < n_full
    # every exchange of the cut file is, byte for byte, one of the full file's
    # (ids and the flags of connections cut short aside)
    full_reqs = {line.split('"http":', 1)[1] for line in full.stdout.splitlines()}
    complete = [x for x in proc.stdout.splitlines() if "incomplete" not in x and "gap" not in x]
    assert complete and all(x.split('"http":', 1)[1] in full_reqs for x in complete)


@pytest.mark.root
def test_truncated_pcapng_and_corrupt_block(lo_capture: LoCapture, tmp_path: Path) -> None:
    ng = tmp_path / "lo.pcapng"
    subprocess.run(["editcap", "-F", "pcapng", str(lo_capture.eth), str(ng)], check=True)
    data = ng.read_bytes()
    cut = tmp_path / "cut.pcapng"
    cut.write_bytes(data[: len(data) // 2])
    proc = _import(cut)
    assert proc.returncode == 0 and "block truncated" in proc.stderr
    assert proc.stdout.count("\n") > 0
    # a block length that is not a multiple of 4 in the middle of the file
    with open(ng, "rb") as fp:
        reader = PcapReader(fp)
        for _ in zip(range(40), reader, strict=False):
            pass
        where = reader.offset
    bad = bytearray(data)
    bad[where + 4 : where + 8] = struct.pack("<I", 0x7FFFFFF3)
    corrupt = tmp_path / "corrupt.pcapng"
    corrupt.write_bytes(bytes(bad))
    proc = _import(corrupt)
    assert proc.returncode == 0
    assert f"corrupt block at byte {where}" in proc.stderr
    assert "40 packets" in proc.stderr


def test_nothing_readable_fails(tmp_path: Path) -> None:
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    proc = _import(empty)
    assert proc.returncode == 2 and "nodetap:" in proc.stderr and "Traceback" not in proc.stderr
    garbage = tmp_path / "garbage.pcap"
    garbage.write_bytes(random.Random(1).randbytes(10_000))
    proc = _import(garbage)
    assert proc.returncode == 2
    assert "not a pcap or pcapng file" in proc.stderr and "Traceback" not in proc.stderr
    header_only = tmp_path / "short.pcap"
    header_only.write_bytes(struct.pack("<IHH", 0xA1B2C3D4, 2, 4))
    proc = _import(header_only)
    assert proc.returncode == 1 and "pcap header truncated" in proc.stderr
    missing = _import(tmp_path / "nope.pcap")
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def test_absurd_record_length_stops_reading(tmp_path: Path) -> None:
    frames = _http_frames()
    path = tmp_path / "absurd.pcap"
    write_frames(path, LinkType.ETHERNET, frames)
    data = bytearray(path.read_bytes())
    # the third record claims 2 GiB
    pos = 24
    for _ in range(2):
        incl = struct.unpack_from("<I", data, pos + 8)[0]
        pos += 16 + incl
    struct.pack_into("<I", data, pos + 8, 0x80000000)
    path.write_bytes(bytes(data))
    proc = _import(path)
    assert proc.returncode == 0
    assert f"corrupt record at byte {pos}: captured length 2147483648" in proc.stderr
    assert "2 packets" in proc.stderr


def test_wrong_link_type(tmp_path: Path) -> None:
    path = tmp_path / "user0.pcap"
    write_frames(path, 147, _http_frames())
    proc = _import(path)
    assert proc.returncode == 1
    assert "no packet has a supported link type" in proc.stderr
    assert "link type 147 is not supported" in proc.stderr


def _frame(
    sport: int, dport: int, seq: int, ack: int, flags: int, payload: bytes, src: bytes, dst: bytes
) -> bytes:
    ip = struct.pack(">BBHHHBBH4s4s", 0x45, 0, 40 + len(payload), 0, 0x4000, 64, 6, 0, src, dst)
    tcp = struct.pack(">HHIIHHHH", sport, dport, seq, ack, (5 << 12) | flags, 65535, 0, 0)
    return b"\0" * 12 + b"\x08\x00" + ip + tcp + payload


def _http_frames() -> list[tuple[int, bytes]]:
    c, s = b"\x0a\0\0\x01", b"\x0a\0\0\x02"
    req = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
    res = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    return [
        (1000, _frame(5000, 80, 100, 0, 0x02, b"", c, s)),
        (2000, _frame(80, 5000, 900, 101, 0x12, b"", s, c)),
        (3000, _frame(5000, 80, 101, 901, 0x10, b"", c, s)),
        (4000, _frame(5000, 80, 101, 901, 0x18, req, c, s)),
        (5000, _frame(80, 5000, 901, 101 + len(req), 0x18, res, s, c)),
        (6000, _frame(5000, 80, 101 + len(req), 901 + len(res), 0x11, b"", c, s)),
        (7000, _frame(80, 5000, 901 + len(res), 102 + len(req), 0x11, b"", s, c)),
    ]


def test_absurd_header_lengths() -> None:
    good = _http_frames()[3][1]
    ip_len_huge = good[:16] + b"\xff\xff" + good[18:]  # IP says 65535, frame is short
    seg = decode(LinkType.ETHERNET, ip_len_huge)
    assert seg.missing == 65535 - 40 - len(seg.payload)
    tcp_off_huge = good[:46] + bytes([0xF0 | (good[46] & 0x0F)]) + good[47:]
    with pytest.raises(Malformed):
        decode(LinkType.ETHERNET, tcp_off_huge[:60])
    ihl_small = good[:14] + b"\x41" + good[15:]
    with pytest.raises(Malformed):
        decode(LinkType.ETHERNET, ihl_small)
    with pytest.raises(Malformed):
        decode(LinkType.ETHERNET, good[:30])  # cut inside the IP header
    with pytest.raises(NotTcp):
        decode(LinkType.ETHERNET, b"\xff" * 12 + b"\x08\x06" + b"\0" * 28)  # ARP
    # a snapped segment: the lost bytes become a gap, the exchange is flagged
    pairs: list[object] = []
    pipe = PacketPipeline(pairs.append, source="pcap")
    for ts, f in _http_frames():
        # the snap length cut the last 5 request bytes
        pipe.frame(ts, LinkType.ETHERNET, f[:-5] if f == good else f)
    pipe.finish()
    assert pipe.summary()["gaps"] == 1 and pipe.summary()["gap_bytes"] == 5


@pytest.mark.root
def test_random_mutations_never_raise(lo_capture: LoCapture) -> None:
    lt, frames = read_frames(lo_capture.eth)
    rng = random.Random(42)
    pairs: list[object] = []
    pipe = PacketPipeline(pairs.append, source="pcap")
    for ts, frame in frames * 3:
        f = bytearray(frame)
        for _ in range(rng.randrange(4)):
            f[rng.randrange(min(len(f), 80))] = rng.randrange(256)
        if rng.random() < 0.1:
            del f[rng.randrange(len(f)) :]
        pipe.frame(ts, lt, bytes(f))
    for _ in range(2000):
        pipe.frame(0, lt, rng.randbytes(rng.randrange(100)))
    pipe.finish()
    s = pipe.summary()
    assert s["packets"] == len(frames) * 3 + 2000
    assert s["malformed"] + s["not_tcp"] > 0


@pytest.mark.slow
def test_a_million_tiny_flows_stay_bounded() -> None:
    """One SYN, then one request line, from a million clients: the table never tracks
    more than max_flows connections, and the evicted ones are closed and counted."""
    max_flows = 20_000
    pairs: list[object] = []
    pipe = PacketPipeline(pairs.append, source="pcap", max_flows=max_flows)
    dst = b"\x0a\xff\0\x01"
    for i in range(1_000_000):
        src = struct.pack(">I", 0x0A000000 + (i >> 15))
        sport = 1024 + (i & 0x7FFF)
        data = b"GET / HTTP/1.1\r\n" if i % 50 == 0 else b""
        flags = 0x02 | (0x08 if data else 0)
        pipe.frame(i * 1000, LinkType.ETHERNET, _frame(sport, 80, i, 0, flags, data, src, dst))
        if i % 100_000 == 0:
            open_flows, keys = pipe.table_size()
            assert open_flows <= max_flows
            assert keys <= 2 * max_flows
    s = pipe.summary()
    assert s["flows"] == 1_000_000
    assert s["open_flows"] == max_flows
    assert s["evicted_limit"] >= 1_000_000 - max_flows - 100
    pipe.finish()
    assert pipe.table_size() == (0, 0)
    assert len(pairs) == 1_000_000 // 50  # each flow with a request line: one incomplete pair


def _tiny_flows_peak(n: int, max_flows: int) -> int:
    """Peak traced memory of n one-request flows through a pipeline: the Python oracle's
    (tracemalloc sees Python's heap only; the core's table is bounded by the same limit,
    test_a_million_tiny_flows_stay_bounded)."""
    pipe = PyPacketPipeline(lambda c: None, source="pcap", max_flows=max_flows)
    dst = b"\x0a\xff\0\x01"
    tracemalloc.start()
    try:
        for i in range(n):
            src = struct.pack(">I", 0x0A000000 + (i >> 15))
            sport = 1024 + (i & 0x7FFF)
            frame = _frame(sport, 80, i, 0, 0x0A, b"GET / HTTP/1.1\r\n", src, dst)
            pipe.frame(i, LinkType.ETHERNET, frame)
            if i % 500 == 0:
                gc.collect()  # closed sessions are reference cycles: count live memory only
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_memory_does_not_grow_with_the_number_of_flows() -> None:
    """Three times the flows (each with a session holding a partial request): the same peak."""
    small = _tiny_flows_peak(2_000, 300)
    large = _tiny_flows_peak(6_000, 300)
    assert large < small * 1.1, (small, large)
    unbounded = _tiny_flows_peak(6_000, 100_000)  # the limit is what keeps it flat
    assert unbounded > 3 * large, (large, unbounded)


def test_live_mode_on_a_missing_interface_is_a_clear_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "capture", "--mode", "packet", "--interface",
         "nt-missing0", "--duration", "1"],
        capture_output=True, text=True, cwd=REPO, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert "interface 'nt-missing0' not found" in proc.stderr and "Traceback" not in proc.stderr


def _cut_stream_bytes(lt: int, frames: list[bytes]) -> int:
    """The stream bytes the cut frames lost, each counted once: a segment TCP sent again
    (loopback retransmits on a loaded machine) loses the same bytes twice in the file but
    leaves one gap in the stream."""
    lost: dict[tuple[bytes, int, bytes, int], list[tuple[int, int]]] = {}
    first: dict[tuple[bytes, int, bytes, int], int] = {}
    for f in frames:
        s = decode(lt, f)
        key = (s.src, s.sport, s.dst, s.dport)
        isn = first.setdefault(key, s.seq)  # offsets from the first segment: no wrap-around
        if s.missing:
            start = (s.seq + len(s.payload) - isn) % 2**32
            lost.setdefault(key, []).append((start, start + s.missing))
    total = 0
    for ranges in lost.values():
        end = -1
        for a, b in sorted(ranges):
            total += max(0, b - max(a, end))
            end = max(end, b)
    return total


@pytest.mark.root
def test_small_snap_length_becomes_gaps(lo_capture: LoCapture, tmp_path: Path) -> None:
    """Frames cut to 300 bytes (tcpdump -s 300): the cut bytes are gaps, counted exactly,
    and the exchanges that lost bytes say so."""
    lt, frames = read_frames(lo_capture.eth)
    cut = [(ts, f[:300]) for ts, f in frames]
    expected = _cut_stream_bytes(lt, [f for _, f in cut])
    assert expected > 0
    path = tmp_path / "snap.pcap"
    write_frames(path, lt, cut)
    pairs: list[pb.RRPair] = []
    with open(path, "rb") as fp:
        res = import_pcap(fp, pairs.append)
    assert res.counters["gap_bytes"] == expected
    assert res.counters["malformed"] == 0
    big = [p for p in pairs if p.http.req.url == "/big.bin"]
    assert big and "gap" in big[0].flags
    hello = [p for p in pairs if p.http.req.url == "/hello" and not p.flags]
    assert hello and all(p.http.res.body == b"hello world\n" for p in hello)
