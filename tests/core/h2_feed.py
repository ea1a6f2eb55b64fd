"""Recorded byte streams (tests/support/relay.py) as ring records fed to the core's
Decoder: the one function the HTTP/2 peer tests swap for live capture once the core is
wired into it.
"""

from __future__ import annotations

from collections.abc import Sequence

import nodetap_core

from agent import bpf_layout as L
from nodetap import rrpair_json
from nodetap.v1 import rrpair_pb2 as pb
from tests.core.paths import MONO_TO_WALL, PREFIX, Conn
from tests.support.relay import Recorded

SERVER, CLIENT = L.NT_ROLE_SERVER, L.NT_ROLE_CLIENT


def records(rec: Recorded, conn_id: int, role: int, skip: int = 0, piece: int = 65536) -> bytes:
    """One batch: OPEN, the pieces as DATA records (split to at most `piece` bytes, as the
    capture's records are), CLOSE. `skip`: the first pieces (reads, in arrival order) were
    not seen (a capture started mid-connection, at a syscall): the rest is offset from 0,
    as for a new tracking."""
    c = Conn(conn_id, role=role)
    out = [c.open(1_000_000)]
    for side, data, ts in rec.pieces[skip:]:
        d = c.req_dir if side == "req" else 1 - c.req_dir
        for i in range(0, len(data), piece):
            out.append(c.data(d, data[i : i + piece], ts))
    last = rec.pieces[-1][2] if rec.pieces else 1_000_000
    out.append(c.close(last + 1000))
    return b"".join(out)


def decode(
    conns: Sequence[Recorded], role: int, max_body: int = 1 << 20, skip: int = 0
) -> tuple[list[pb.RRPair], dict[str, int]]:
    """The RRPairs (and counters) the core makes of these connections seen from `role`'s
    side (SERVER: INBOUND, CLIENT: OUTBOUND)."""
    dec = nodetap_core.Decoder(max_body, PREFIX, MONO_TO_WALL, protobuf=True, jsonl=True)
    for i, rec in enumerate(conns):
        dec.feed_records(records(rec, i + 1, role, skip))
    dec.close_all(2**62)
    pairs = [pb.RRPair.FromString(b) for b in dec.take_rrpairs()]
    # the core's JSON lines are what the Python writer makes of the same RRPairs
    assert dec.take_jsonl() == [rrpair_json.dumps(p).encode() for p in pairs]
    counters = dec.counters()
    assert counters["panics"] == 0
    return pairs, counters
