"""Bounded fuzzing of the forwarder's gRPC API (issue 22): random requests and random bytes to
every method of a live forwarder. Every call ends OK or with a clear client-side code
(INVALID_ARGUMENT, NOT_FOUND; INTERNAL for bytes that are no message), never UNKNOWN (an
exception in the server) nor UNAVAILABLE (which agents retry forever); the forwarder still
serves afterwards. Bounded: a fixed number of examples, no deadline per example."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from forwarder import client
from forwarder.server import ForwarderHandle, serve
from nodetap import transport
from nodetap.v1 import forwarder_pb2 as fpb
from nodetap.v1 import rrpair_pb2 as pb

I64 = st.integers(-(1 << 63), (1 << 63) - 1)
SECONDS = st.one_of(I64, st.integers(-(10**11), 10**11), st.just(1 << 62))
NANOS = st.one_of(st.integers(-(1 << 31), (1 << 31) - 1), st.integers(0, 999_999_999))
TEXT = st.text(max_size=20)
CLEAN = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}
SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None
)


@st.composite
def filters(draw: st.DrawFn) -> fpb.Filter:
    f = fpb.Filter(
        namespaces=draw(st.lists(TEXT, max_size=3)),
        pods=draw(st.lists(TEXT, max_size=2)),
        methods=draw(st.lists(TEXT, max_size=2)),
        url_prefix=draw(TEXT),
        status_min=draw(st.integers(-(1 << 31), (1 << 31) - 1)),
        status_max=draw(st.integers(-(1 << 31), (1 << 31) - 1)),
        directions=draw(st.lists(st.integers(0, 3), max_size=2)),  # type: ignore[arg-type]
    )
    for name in ("since", "until"):
        if draw(st.booleans()):
            ts = getattr(f, name)
            ts.seconds, ts.nanos = draw(SECONDS), draw(NANOS)
    return f


@st.composite
def pairs(draw: st.DrawFn) -> pb.RRPair:
    p = pb.RRPair(id=draw(TEXT), l7protocol=draw(TEXT))
    p.ts.seconds, p.ts.nanos = draw(SECONDS), draw(NANOS)
    p.meta.namespace = draw(TEXT)
    p.http.req.method = draw(TEXT)
    p.http.req.url = draw(TEXT)
    p.http.req.body = draw(st.binary(max_size=64))
    if draw(st.booleans()):
        p.http.res.status_code = draw(st.integers(-(1 << 31), (1 << 31) - 1))
    return p


@pytest.fixture(scope="module")
def fwd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForwarderHandle]:
    h = serve("127.0.0.1:0", str(tmp_path_factory.mktemp("fuzz") / "data"), sync="normal")
    try:
        yield h
    finally:
        h.stop(0)


def _code(call: object) -> grpc.StatusCode:
    try:
        result = call() if callable(call) else None
        if isinstance(result, Iterator):
            list(result)
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code()


def _stub(h: ForwarderHandle) -> tuple[grpc.Channel, object]:
    ch = transport.channel(f"127.0.0.1:{h.port}")
    return ch, client.stub(ch)


@pytest.mark.slow
@SETTINGS
@given(
    agent=TEXT,
    seq=st.integers(0, (1 << 64) - 1),
    batch=st.lists(pairs(), max_size=4),
    flt=filters(),
    limit=st.integers(0, (1 << 64) - 1),
    snap=TEXT,
)
def test_random_requests_get_clear_answers(
    fwd: ForwarderHandle,
    agent: str,
    seq: int,
    batch: list[pb.RRPair],
    flt: fpb.Filter,
    limit: int,
    snap: str,
) -> None:
    ch, stub = _stub(fwd)
    s: object = stub
    try:
        ing = fpb.IngestBatch(agent_id=agent, seq=seq, pairs=batch)
        calls = {
            "Ingest": lambda: s.Ingest(iter([ing]), timeout=20),  # type: ignore[attr-defined]
            "Export": lambda: s.Export(  # type: ignore[attr-defined]
                fpb.ExportRequest(filter=flt, limit=limit, snapshot_id=snap), timeout=20
            ),
            "CreateSnapshot": lambda: s.CreateSnapshot(  # type: ignore[attr-defined]
                fpb.CreateSnapshotRequest(name=snap, filter=flt), timeout=20
            ),
            "DeleteSnapshot": lambda: s.DeleteSnapshot(  # type: ignore[attr-defined]
                fpb.DeleteSnapshotRequest(id=snap), timeout=20
            ),
        }
        for name, call in calls.items():
            code = _code(call)
            assert code in CLEAN, (name, code)
    finally:
        ch.close()


@pytest.mark.slow
@SETTINGS
@given(data=st.binary(max_size=64), method=st.sampled_from(
    ["Ingest", "Subscribe", "Export", "CreateSnapshot", "ListSnapshots", "DeleteSnapshot", "Stats"]
))  # fmt: skip
def test_random_bytes_get_clear_answers(fwd: ForwarderHandle, data: bytes, method: str) -> None:
    ch = transport.channel(f"127.0.0.1:{fwd.port}")
    path = f"/nodetap.v1.Forwarder/{method}"
    try:
        if method == "Ingest":
            call: object = lambda: ch.stream_stream(path)(iter([data]), timeout=20)  # noqa: E731
        elif method in ("Subscribe", "Export"):
            call = lambda: ch.unary_stream(path)(data, timeout=2)  # noqa: E731
        else:
            call = lambda: ch.unary_unary(path)(data, timeout=20)  # noqa: E731
        code = _code(call)
        ok = CLEAN | {grpc.StatusCode.INTERNAL}  # INTERNAL: "Exception deserializing request"
        if method == "Subscribe":
            ok.add(grpc.StatusCode.DEADLINE_EXCEEDED)  # a valid request: the live tail runs
        assert code in ok, (method, data, code)
    finally:
        ch.close()


def test_still_serving_after_fuzzing(fwd: ForwarderHandle, tmp_path: Path) -> None:
    ch, stub = _stub(fwd)
    try:
        p = pb.RRPair(id="after-fuzz")
        p.ts.FromNanoseconds(1_700_000_000_000_000_000)
        acks = list(
            stub.Ingest(iter([fpb.IngestBatch(agent_id="z-after", seq=1, pairs=[p])]), timeout=20)  # type: ignore[attr-defined]
        )
        assert acks and acks[0].stored == 1
        got = [x.id for x in stub.Export(fpb.ExportRequest(), timeout=20)]  # type: ignore[attr-defined]
        assert "after-fuzz" in got
    finally:
        ch.close()
