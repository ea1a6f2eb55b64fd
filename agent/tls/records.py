"""NT_EV_TLS_DATA / NT_EV_TLS_GAP records (bpf/tls_openssl.c) as plaintext data of their
connection.

The first plaintext record of a connection switches it to TLS: fresh streams whose offsets
count plaintext (``PlaintextStream``: the connection's CLOSE record carries ciphertext
offsets, which say nothing about where the plaintext ends), a fresh HTTP stitcher (the
ciphertext it may have seen before the programs knew the connection was TLS is dropped),
and ``meta.source`` "tls". The record is then handled as an NT_EV_DATA / NT_EV_GAP record
(agent/capture.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent import bpf_layout as L
from agent.protocols.http1 import Http1Stitcher
from agent.streams import Chunk, OrderedStream

if TYPE_CHECKING:
    from agent.capture import SyscallCapture
    from agent.connections import Connection

_AS_PLAIN = {L.NT_EV_TLS_DATA: L.NT_EV_DATA, L.NT_EV_TLS_GAP: L.NT_EV_GAP}


class PlaintextStream(OrderedStream):
    """The plaintext of one direction of a TLS connection. Its end is where its last
    record ends: the kernel's final counts (a CLOSE record's, or the conns entry's) are
    ciphertext counts, so they only make what is still queued be delivered."""

    def close_at(self, offset: int, ts_ns: int) -> list[Chunk]:
        out: list[Chunk] = []
        while self.waiting:
            out.extend(self.declare_gap())
        return out


def is_tls(conn: Connection) -> bool:
    return isinstance(conn.streams[0], PlaintextStream)


def switch_to_tls(cap: SyscallCapture, conn: Connection) -> None:
    """From now on conn's records are plaintext: fresh streams and parser, source "tls"."""
    conn.streams = (PlaintextStream(), PlaintextStream())
    preexisting = "preexisting" in conn.flags
    conn.stitcher = Http1Stitcher(max_body=cap.cfg.max_body, resync=preexisting)
    conn.source = "tls"
    conn.ctx = None
    cap._holey.discard(conn)
    cap.stats["conns_tls"] += 1


def as_plain(cap: SyscallCapture, rec: memoryview) -> bytearray | None:
    """rec as the NT_EV_DATA / NT_EV_GAP record of its connection's plaintext streams (its
    connection switched to TLS first), or None for a kind this agent does not know."""
    kind = _AS_PLAIN.get(rec[0])
    if kind is None:
        cap.stats["records_unknown"] += 1
        return None
    cap.stats["tls_records"] += 1
    _, _d, _sc, _ln, cid, *_ = L.DATA_HDR.unpack_from(rec)
    conn = cap.tracker.get(cid)
    if conn is not None and not conn.dead and not is_tls(conn):
        switch_to_tls(cap, conn)
    out = bytearray(rec)
    out[0] = kind
    return out
