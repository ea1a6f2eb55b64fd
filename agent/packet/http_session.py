"""Reassembled flows into the Rust core: ordered bytes in, RRPairs (HTTP/1.x, HTTP/2, gRPC) out.

The bridge between the flow table (agent.packet.flows) and the core (nodetap_core), the
same decoder the syscall capture feeds. Each flow becomes the records the kernel programs
would have written for the client's side of the connection (agent/packet/records.py):
OPEN with its addresses (flagged preexisting when the capture missed the handshake), DATA
and GAP per direction at their stream offsets, CLOSE. Its context (direction NETWORK,
client, server, source, node) is given to the core once, before its OPEN. Records are
batched; ``flush`` feeds the batch and hands the RRPairs out (as CoreExchange: protobuf
or JSON line, built by the core).
"""

from __future__ import annotations

from collections.abc import Callable

import nodetap_core

from agent.capture_core import CoreExchange
from agent.packet import records as R
from agent.packet.flows import FlowInfo, Session
from agent.protocols.http1.types import HttpExchange
from agent.rrpairs import CapturedExchange, ConnContext, build_http_rrpair
from nodetap.identity import Identity
from nodetap.v1 import rrpair_pb2 as pb

Emit = Callable[[pb.RRPair], None]
# Receives each exchange with its context; it builds the RRPair message or its JSON line
# only in the form needed (CapturedExchange.proto() / .json_line()).
OnExchange = Callable[[CapturedExchange], None]

# a batch is fed to the core past this many bytes of records (large enough that the call
# costs nothing per record, small enough that the batch is no memory to speak of)
BATCH_BYTES = 64 << 10


def emitting(emit: Emit) -> OnExchange:
    """An OnExchange that hands RRPair messages to `emit`."""

    def on_exchange(c: CapturedExchange) -> None:
        emit(c.proto())

    return on_exchange


class CoreFlowSession:
    """One flow's records: offsets per direction, appended to the shared batch."""

    __slots__ = ("_cid", "_off", "_owner")

    def __init__(self, owner: CoreSessions, cid: int) -> None:
        self._owner = owner
        self._cid = cid
        self._off = [0, 0]  # EGRESS (client to server), INGRESS

    def data(self, from_client: bool, data: bytes, ts_ns: int) -> None:
        d = 0 if from_client else 1
        off = self._off[d]
        self._off[d] = off + len(data)
        owner = self._owner
        owner.buf += R.data(self._cid, d, off, data, ts_ns)
        if len(owner.buf) > BATCH_BYTES:
            owner.flush()

    def gap(self, from_client: bool, size: int, ts_ns: int) -> None:
        d = 0 if from_client else 1
        off = self._off[d]
        self._off[d] = off + size
        self._owner.buf += R.gap(self._cid, d, off, size, ts_ns)

    def close(self, ts_ns: int) -> None:
        owner = self._owner
        owner.buf += R.close(self._cid, ts_ns, self._off)
        if len(owner.buf) > BATCH_BYTES:
            owner.flush()


class CoreSessions:
    """The flow table's session factory: one core Decoder for every flow."""

    def __init__(
        self,
        emit: OnExchange,
        source: str,
        max_body: int,
        node: str = "",
        id_prefix: str | None = None,
        jsonl: bool = False,
    ) -> None:
        self._emit = emit
        self._source = source
        self._node = node
        self._jsonl = jsonl
        prefix = id_prefix or R.default_prefix()
        self.dec = nodetap_core.Decoder(max_body, prefix, 0, protobuf=not jsonl, jsonl=jsonl)
        self.buf = bytearray()
        self.rrpairs = 0

    def __call__(self, info: FlowInfo) -> Session:
        ctx = ConnContext(
            direction="NETWORK",
            client_ip=info.client_ip,
            client_port=info.client_port,
            server_ip=info.server_ip,
            server_port=info.server_port,
            source=self._source,
            conn_id=info.flow_id,
            who=Identity(node=self._node),
            flags={"preexisting"} if info.midstream else set(),
        )
        template = build_http_rrpair(HttpExchange(None, None), ctx, "")
        self.dec.set_context(info.flow_id, template.SerializeToString())
        self.buf += R.open_record(info)
        return CoreFlowSession(self, info.flow_id)

    def flush(self) -> None:
        """Feed the batch; hand out the RRPairs the core finished."""
        dec = self.dec
        if self.buf:
            blob = bytes(self.buf)
            self.buf.clear()
            dec.feed_records(blob)
        emit = self._emit
        if self._jsonl:
            lines = dec.take_jsonl()
            self.rrpairs += len(lines)
            for line in lines:
                emit(CoreExchange(None, line))
        else:
            encoded = dec.take_rrpairs()
            self.rrpairs += len(encoded)
            for b in encoded:
                emit(CoreExchange(b, None))

    def counters(self) -> dict[str, int]:
        return dict(self.dec.counters())
