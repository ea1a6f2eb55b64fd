"""Ring-buffer records for the core's tests, and the two decoders they feed: the Python
path (agent/capture.py's record loop, without BPF) and the Rust core (nodetap_core)."""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import nodetap_core

from agent import bpf_layout as L
from agent.capture import CaptureConfig, SyscallCapture
from agent.copy_bound import copy_bound
from agent.ringbuf import iter_records
from agent.rrpairs import RRPairIds
from agent.sendfile_bodies import FileRanges, SendfileRecord
from nodetap import rrpair_json
from nodetap.v1 import rrpair_pb2 as pb

PREFIX = "node-1"
MONO_TO_WALL = 1_764_000_000_000_000_000  # a fixed clock offset, the same for both paths


def ring(payload: bytes) -> bytes:
    """One record in ring-buffer format (8-byte header, 8-byte aligned)."""
    return struct.pack("<II", len(payload), 0) + payload + bytes(-len(payload) % 8)


def _addr(ip: str) -> bytes:
    a = ipaddress.ip_address(ip)
    if a.version == 4:
        return bytes(10) + b"\xff\xff" + a.packed
    return a.packed


@dataclass
class Conn:
    """One connection as the programs report it: role, addresses, offsets so far."""

    conn_id: int
    role: int = L.NT_ROLE_SERVER
    tgid: int = 4242
    fd: int = 7
    local: tuple[str, int] = ("127.0.0.1", 8080)
    remote: tuple[str, int] = ("127.0.0.1", 50000)
    comm: bytes = b"nginx"

    def __post_init__(self) -> None:
        self.off = [0, 0]

    def _event(self, kind: int, ts: int) -> bytes:
        return ring(
            L.CONN_EVENT.pack(
                kind,
                self.role,
                10,
                self.tgid,
                self.conn_id,
                ts,
                self.fd,
                self.local[1],
                self.remote[1],
                _addr(self.local[0]),
                _addr(self.remote[0]),
                self.off[0],
                self.off[1],
                0,
                self.comm.ljust(16, b"\0"),
            )
        )

    def open(self, ts: int) -> bytes:
        return self._event(L.NT_EV_OPEN, ts)

    def close(self, ts: int) -> bytes:
        return self._event(L.NT_EV_CLOSE, ts)

    def data(self, d: int, payload: bytes, ts: int, offset: int | None = None) -> bytes:
        off = self.off[d] if offset is None else offset
        self.off[d] = max(self.off[d], off + len(payload))
        hdr = L.DATA_HDR.pack(
            L.NT_EV_DATA, d, 1, len(payload), self.conn_id, ts, off, self.tgid, self.fd
        )
        return ring(hdr + payload)

    def gap(self, d: int, n: int, ts: int, bound: bool = False) -> bytes:
        sc = 9 | (L.NT_GAP_BOUND if bound else 0)
        hdr = L.DATA_HDR.pack(L.NT_EV_GAP, d, sc, n, self.conn_id, ts, self.off[d], self.tgid, 0)
        self.off[d] += n
        return ring(hdr)

    def sendfile(self, d: int, n: int, ts: int, path: bytes, file_off: int = 0) -> bytes:
        """An NT_EV_SENDFILE record: n bytes of the file at path (absolute, as this
        connection's process sees it) from file_off."""
        hdr = L.SENDFILE_EVENT.pack(
            L.NT_EV_SENDFILE,
            d,
            9,
            n,
            self.conn_id,
            ts,
            self.off[d],
            self.tgid,
            self.fd,
            file_off,
            -1,
            L.NT_AT_FDCWD,
            len(path) + 1,
        )
        self.off[d] += n
        return ring(hdr + path + b"\0")

    @property
    def req_dir(self) -> int:
        return L.NT_DIR_EGRESS if self.role == L.NT_ROLE_CLIENT else L.NT_DIR_INGRESS


def conversation(
    conn: Conn, pieces: Sequence[tuple[str, bytes | int]], t0: int = 1_000_000
) -> list[bytes]:
    """Records of one connection: OPEN, each piece ("req"/"res" bytes, or an int: a GAP of
    that many bytes) 1 µs apart, CLOSE. One record per element: join them for one batch."""
    out = [conn.open(t0)]
    ts = t0
    for side, piece in pieces:
        ts += 1000
        d = conn.req_dir if side == "req" else 1 - conn.req_dir
        out.append(conn.gap(d, piece, ts) if isinstance(piece, int) else conn.data(d, piece, ts))
    out.append(conn.close(ts + 1000))
    return out


def python_path(batches: Iterable[bytes], max_body: int = 1 << 20) -> list[pb.RRPair]:
    """The RRPairs agent/capture.py's record loop makes of these batches (as poll() does,
    minus the ring buffer): the Python path the core must equal."""
    out: list[pb.RRPair] = []
    cfg = CaptureConfig(max_body=max_body, node="", preexisting=False, decoder="python")
    cap = SyscallCapture(cfg, emit=out.append)
    cap._mono_to_wall = MONO_TO_WALL
    cap.ids = RRPairIds(PREFIX)
    for blob in batches:
        for rec in iter_records(memoryview(blob)):
            cap._handle(rec)
        for conn in list(cap._holey):
            cap._end_of_batch(conn)
        if cap._parked:
            cap._age_parked(force=True)
    return out


def core_path(
    batches: Iterable[bytes], max_body: int = 1 << 20
) -> tuple[list[bytes], list[bytes], dict[str, int]]:
    """The core's encoded RRPairs, JSON lines and counters for the same batches."""
    dec = nodetap_core.Decoder(max_body, PREFIX, MONO_TO_WALL, protobuf=True, jsonl=True)
    files = FileRanges(copy_bound(max_body))
    for blob in batches:
        start = 0
        while (stop := dec.feed_records(blob, start)) is not None:
            at, start = stop  # a sendfile record: its bytes read back as the capture does
            r = SendfileRecord.unpack(memoryview(blob)[at:])
            data = files.read(r, r.ts_ns + MONO_TO_WALL)
            dec.feed_sendfile(r.conn_id, r.dir, r.offset, r.length, r.ts_ns, data)
    files.close()
    return dec.take_rrpairs(), dec.take_jsonl(), dec.counters()


def assert_same(batches: Sequence[bytes], max_body: int = 1 << 20) -> list[pb.RRPair]:
    """Both paths give the same RRPairs, byte for byte (protobuf and JSON lines)."""
    want = python_path(batches, max_body)
    got_pb, got_json, counters = core_path(batches, max_body)
    assert counters["panics"] == 0
    got = [pb.RRPair.FromString(b) for b in got_pb]
    assert got == want  # readable diff first
    assert got_pb == [p.SerializeToString() for p in want]
    assert got_json == [rrpair_json.dumps(p).encode() for p in want]
    return want
