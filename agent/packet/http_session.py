"""HTTP/1.x on a reassembled flow: ordered bytes in, captured exchanges (RRPairs) out.

The bridge between the flow table (agent.packet.flows) and the sans-IO HTTP/1.x stitcher;
it knows the data model through agent.rrpairs and nothing of files or sockets.
"""

from __future__ import annotations

from collections.abc import Callable

from agent.packet.flows import FlowInfo, Session
from agent.protocols.http1 import Http1Stitcher
from agent.protocols.http1.types import HttpExchange
from agent.rrpairs import CapturedExchange, ConnContext, RRPairIds
from nodetap.identity import Identity
from nodetap.v1 import rrpair_pb2 as pb

Emit = Callable[[pb.RRPair], None]
# Receives each exchange with its context; it builds the RRPair message or its JSON line
# only in the form needed (CapturedExchange.proto() / .json_line()).
OnExchange = Callable[[CapturedExchange], None]


def emitting(emit: Emit) -> OnExchange:
    """An OnExchange that hands RRPair messages to `emit`."""

    def on_exchange(c: CapturedExchange) -> None:
        emit(c.proto())

    return on_exchange


class HttpFlowSession:
    """Feeds one flow's two directions to an Http1Stitcher and hands on the exchanges."""

    __slots__ = ("_ctx", "_emit", "_ids", "_stitcher", "exchanges")

    def __init__(
        self,
        info: FlowInfo,
        ctx: ConnContext,
        stitcher: Http1Stitcher,
        ids: RRPairIds,
        emit: OnExchange,
    ) -> None:
        self._ctx = ctx
        self._stitcher = stitcher
        self._ids = ids
        self._emit = emit
        self.exchanges = 0

    def data(self, from_client: bool, data: bytes, ts_ns: int) -> None:
        st = self._stitcher
        out = (
            st.feed_request_bytes(data, ts_ns)
            if from_client
            else st.feed_response_bytes(data, ts_ns)
        )
        if out:
            self._out(out)

    def gap(self, from_client: bool, size: int, ts_ns: int) -> None:
        st = self._stitcher
        out = st.request_gap(size, ts_ns) if from_client else st.response_gap(size, ts_ns)
        if out:
            self._out(out)

    def close(self, ts_ns: int) -> None:
        out = self._stitcher.close(ts_ns)
        if out:
            self._out(out)

    def _out(self, exchanges: list[HttpExchange]) -> None:
        for ex in exchanges:
            self.exchanges += 1
            self._emit(CapturedExchange(ex, self._ctx, self._ids.next()))


class HttpSessionFactory:
    """Makes an HttpFlowSession for each new flow (the flow table's session factory)."""

    def __init__(
        self,
        emit: OnExchange,
        source: str,
        max_body: int,
        node: str = "",
        ids: RRPairIds | None = None,
    ) -> None:
        self._emit = emit
        self._source = source
        self._max_body = max_body
        self._node = node
        self._ids = ids or RRPairIds()

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
        stitcher = Http1Stitcher(max_body=self._max_body, resync=info.midstream)
        return HttpFlowSession(info, ctx, stitcher, self._ids, self._emit)
