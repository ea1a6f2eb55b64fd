"""The record loop on the Rust core (the capture's decoder): ring-buffer batches in, contexts
out, encoded RRPairs back.

The core (core/, nodetap_core) walks every record: ordered streams, gaps, the HTTP/1.x
parser and stitcher, RRPair encoding (protobuf and JSON lines). Python never walks a data
record; it keeps what it is good at, once per connection:

- the connection records (OPEN, ADDR, CLOSE) the core hands back after each batch:
  addresses not known at open (agent/capture_addresses.py), the --port filter, enrichment
  (agent/conn_context.py) and the kernel's table (untracking);
- the context of each connection, given to the core once (``set_context``: an encoded
  RRPair with direction, client, server, meta, connection-wide flags); until then the
  core holds the connection's exchanges (``hold``);
- the bytes only it can get: sendfile's, read back from the file (agent/sendfile_bodies.py);
  the core stops at such a record and Python gives them (``feed_sendfile``);
- connections it learns of itself (opened before the capture, orphans adopted from /proc)
  and the ends it sees itself (processes gone, the capture stopping): fed to the core as
  the OPEN/CLOSE records the programs would have written;
- the edge rules: loaded, validated and reloaded by Python (agent/rules/), run by the core
  on each RRPair before it is encoded (agent/capture_rules.py).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any

import nodetap_core

from agent import bpf_layout as L
from agent.capture_addresses import CaptureAddresses
from agent.capture_rules import CoreRules
from agent.connections import Connection
from agent.protocols.http1 import Http1Stitcher
from agent.protocols.http1.types import HttpExchange
from agent.rrpairs import CapturedExchange, build_http_rrpair
from agent.sendfile_bodies import FileRanges, SendfileRecord
from nodetap import jsonl, rrpair_json
from nodetap.v1 import rrpair_pb2 as pb

if TYPE_CHECKING:
    from collections.abc import Callable

    from agent.rrpairs import ConnContext
    from agent.rules import RuleEngine

# the OPEN record's family bit for a connection opened before the capture (core/src/layout.rs)
_FAMILY_PREEXISTING = 0x8000

# counters the Python side keeps itself (connections it made, orphans it could not adopt)
_COUNTED_HERE = frozenset({"conns_tracked", "orphan_records"})

# the Python-path stitcher a core-decoded connection carries but never feeds
_UNUSED_STITCHER = Http1Stitcher()


def ring_record(payload: bytes) -> bytes:
    """One record in ring-buffer format (8-byte header, 8-byte aligned)."""
    return struct.pack("<II", len(payload), 0) + payload + bytes(-len(payload) % 8)


def _addr16(ip: str) -> bytes:
    import ipaddress

    a = ipaddress.ip_address(ip or "0.0.0.0")
    return (bytes(10) + b"\xff\xff" + a.packed) if a.version == 4 else a.packed


def conn_record(kind: int, conn: Connection, ts: int, off: tuple[int, int] = (0, 0)) -> bytes:
    """The OPEN or CLOSE record the programs would have written for conn."""
    return ring_record(
        L.CONN_EVENT.pack(
            kind,
            conn.role,
            10 | (_FAMILY_PREEXISTING if "preexisting" in conn.flags else 0),
            conn.tgid,
            conn.conn_id,
            ts,
            conn.fd,
            conn.local_port,
            conn.remote_port,
            _addr16(conn.local_ip),
            _addr16(conn.remote_ip),
            off[0],
            off[1],
            conn.cgroup_id,
            conn.comm.encode("utf-8", "replace")[:15].ljust(16, b"\0"),
        )
    )


class CoreExchange(CapturedExchange):
    """An RRPair the core encoded (protobuf, JSON line): parsed only if a consumer needs
    the message (edge rules, the forwarder sink)."""

    __slots__ = ("_line", "_pb")

    def __init__(self, encoded: bytes | None, line: bytes | None) -> None:
        self._pb = encoded
        self._line = line
        self._proto = None
        self.id = ""

    def proto(self) -> pb.RRPair:
        if self._proto is None:
            if self._pb is not None:
                self._proto = pb.RRPair.FromString(self._pb)
            else:  # JSON lines only (the fast path): read back (rrpair_json.py)
                assert self._line is not None
                self._proto = jsonl.loads(self._line)
            self.id = self._proto.id
        return self._proto

    def json_line(self) -> str:
        if self._proto is not None or self._line is None:
            return rrpair_json.dumps(self.proto())  # possibly changed (redaction)
        return self._line.decode()

    def has_header(self, names: frozenset[str]) -> bool:
        if not names:
            return False
        if self._line is not None:  # names are tokens: as written in the JSON line
            low = self._line.lower()
            return any(b'"name":"' + n.encode() + b'"' in low for n in names)
        return super().has_header(names)


class CoreRecords(CaptureAddresses):
    """The core side of agent.capture.SyscallCapture (used when cfg.decoder == "core")."""

    if TYPE_CHECKING:  # the record loop's side (agent/capture.py)
        _files: FileRanges
        _mono_to_wall: int
        emit: Callable[[pb.RRPair], None] | None
        on_exchange: Callable[[CapturedExchange], None] | None

        def _on_open(self, f: tuple[Any, ...]) -> None: ...
        def _adopt_orphan(self, cid: int, tgid: int, fd: int, ts: int) -> Connection | None: ...
        def _context(self, conn: Connection) -> ConnContext: ...

    _dec: nodetap_core.Decoder | None = None
    _rules: CoreRules | None = None

    def _core_init(self, prefix: str, rules: RuleEngine | None = None) -> None:
        # the forms the receiver needs: JSON lines only for a pipeline on its fast path
        # (agent/pipeline.py: no Python rules left to run, no sink), else protobuf only
        receiver = getattr(self.on_exchange, "__self__", None)
        fast = bool(getattr(receiver, "fast", False))
        # the receiver's output flushed once per batch (its fast path writes without flushing)
        self._flush: Callable[[], None] | None = getattr(receiver, "flush", None)
        # the receiver's batch writer: JSON lines written in one go, no object per RRPair
        self._write_lines: Callable[[list[bytes]], bool] | None = (
            getattr(receiver, "write_lines", None) if fast else None
        )
        self._dec = nodetap_core.Decoder(
            self.cfg.max_body,
            prefix,
            self._mono_to_wall,
            protobuf=not fast,
            jsonl=fast,
            hold=True,
        )
        if rules is not None:
            self._rules = CoreRules(rules, self._dec)
        self._core_seen: dict[str, int] = {}
        self._fresh: list[Connection] = []  # new connections whose context is not given yet
        self._given: set[int] = set()  # connections whose context the core has
        self._close_offs: dict[int, tuple[int, int]] = {}
        self._opening = 0  # the OPEN record being handled came from the core

    # ---- batches ----

    def _core_feed(self, blob: bytes) -> int:
        """One batch: through the core, then its connection records, contexts, RRPairs."""
        dec = self._dec
        assert dec is not None
        if self._rules is not None:
            self._rules.check_reload(self.stats)
        before = self._core_seen.get("records", 0)
        start = 0
        while (stop := dec.feed_records(blob, start)) is not None:
            at, start = stop
            self._core_sendfile(SendfileRecord.unpack(memoryview(blob)[at:]))
        self._core_after()  # its _deliver() reads the counters
        return self._core_seen.get("records", 0) - before

    def _core_sendfile(self, r: SendfileRecord) -> None:
        assert self._dec is not None
        data = self._files.read(r, r.ts_ns + self._mono_to_wall)
        if data is None:
            self.stats["drop_sendfile_unreadable_bytes"] += r.length
        else:
            self.stats["sendfile_read_bytes"] += len(data)
        self._dec.feed_sendfile(r.conn_id, r.dir, r.offset, r.length, r.ts_ns, data)

    def _core_after(self) -> None:
        dec = self._dec
        assert dec is not None
        for raw in dec.take_control():
            f = L.CONN_EVENT.unpack_from(raw)
            kind, cid = f[0], f[4]
            if kind == L.NT_EV_OPEN:
                self._opening = cid
                try:
                    self._on_open(f)
                finally:
                    self._opening = 0
            elif kind == L.NT_EV_ADDR:
                self._on_addr(f)
                conn = self.tracker.get(cid)
                if conn is not None and cid in self._given and conn.ctx is None:
                    self._give_context(conn)  # its addresses changed
            else:
                conn = self.tracker.pop(cid)
                self._given.discard(cid)
                if conn is not None and conn.noaddr:
                    self._parked[cid] = (conn, 0)
        self._give_fresh()  # before a stop drops what the core holds for them
        for cid in dec.take_stopped():
            conn = self.tracker.get(cid)
            if conn is not None:
                self._untrack(conn)
        for cid, tgid, fd, ts in dec.take_orphans():
            self._adopt_orphan(cid, tgid, fd, ts)
        self._give_fresh()
        self._deliver()

    def _give_fresh(self) -> None:
        fresh, self._fresh = self._fresh, []
        for conn in fresh:
            if not conn.noaddr and not conn.dead:
                self._give_context(conn)

    def _give_context(self, conn: Connection) -> None:
        assert self._dec is not None
        template = build_http_rrpair(HttpExchange(None, None), self._context(conn), "")
        self._dec.set_context(conn.conn_id, template.SerializeToString())
        if self.tracker.get(conn.conn_id) is not None:
            self._given.add(conn.conn_id)

    def _deliver(self) -> None:
        dec = self._dec
        assert dec is not None
        encoded = dec.take_rrpairs()
        lines = dec.take_jsonl()
        if self.on_exchange is not None:
            on = self.on_exchange
            if lines and self._write_lines is not None and self._write_lines(lines):
                pass  # the whole batch written at once (agent/pipeline.py)
            elif lines:
                for line in lines:
                    on(CoreExchange(None, line))
            else:
                for b in encoded:
                    on(CoreExchange(b, None))
            if (lines or encoded) and self._flush is not None:
                self._flush()
        elif self.emit is not None:
            for b in encoded:
                self.emit(pb.RRPair.FromString(b))
        counters = dec.counters()
        seen = self._core_seen
        for name, value in counters.items():
            if name in self.stats and name not in _COUNTED_HERE:
                self.stats[name] += value - seen.get(name, 0)
        self._core_seen = counters
        if self._rules is not None:
            self._rules.harvest(self.stats)

    # ---- hooks of the Python record loop ----

    def _core_new_conn(self, conn: Connection) -> None:
        """A connection the Python side made (from a core OPEN, /proc, a preexisting one)."""
        assert self._dec is not None
        if conn.conn_id != self._opening:  # the core has not seen its OPEN
            self._dec.feed_records(conn_record(L.NT_EV_OPEN, conn, conn.opened_ns))
        self._fresh.append(conn)

    def _released(self, conn: Connection, held: list[HttpExchange]) -> None:
        if self._dec is None:
            super()._released(conn, held)
        else:
            self._give_context(conn)
            self._deliver()

    def _core_end(self, conn: Connection, ts: int) -> None:
        """The connection ended without a CLOSE record (process gone, capture stops)."""
        assert self._dec is not None
        off = self._close_offs.pop(conn.conn_id, (0, 0))
        self._dec.feed_records(conn_record(L.NT_EV_CLOSE, conn, ts, off))
        self._core_after()

    def _core_kernel_offsets(self, conn: Connection, cur: Any) -> None:
        self._close_offs[conn.conn_id] = (int(cur.off[0]), int(cur.off[1]))

    def _core_close(self) -> None:
        """The capture stopped: what is still held goes out."""
        assert self._dec is not None
        self._give_fresh()
        self._deliver()


def unused_stitcher() -> Http1Stitcher:
    """The stitcher of core-decoded connections (never fed)."""
    return _UNUSED_STITCHER
