"""The forwarder's API and store under hostile or careless use (issue 22): out-of-range times and
sequence numbers get one INVALID_ARGUMENT, a full disk says so, the store is private, and a
client that stops reading an Export does not pin SQLite's WAL."""

from __future__ import annotations

import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from forwarder import client
from forwarder.server import ForwarderHandle, serve
from forwarder.storage.sqlite import DB_NAME
from nodetap import transport
from nodetap.v1 import forwarder_pb2 as fpb
from nodetap.v1 import rrpair_pb2 as pb


@pytest.fixture
def fwd(tmp_path: Path) -> Iterator[ForwarderHandle]:
    h = serve("127.0.0.1:0", str(tmp_path / "data"), sync="normal")
    try:
        yield h
    finally:
        h.stop(0)


def _stub(h: ForwarderHandle) -> tuple[grpc.Channel, object]:
    ch = transport.channel(f"127.0.0.1:{h.port}")
    return ch, client.stub(ch)


def _pair(i: int, size: int = 100) -> pb.RRPair:
    p = pb.RRPair(id=f"p{i}")
    p.ts.FromNanoseconds(1_700_000_000_000_000_000 + i)
    p.http.req.method = "GET"
    p.http.req.url = f"/{i}"
    p.http.req.body = os.urandom(size)  # incompressible, a realistic store size
    return p


def _ingest(stub: object, agent: str, batches: list[list[pb.RRPair]], first: int = 1) -> None:
    reqs = (fpb.IngestBatch(agent_id=agent, seq=first + i, pairs=b) for i, b in enumerate(batches))
    acks = list(stub.Ingest(reqs, timeout=60))  # type: ignore[attr-defined]
    assert len(acks) == len(batches)


def _code(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as e:
        call() if callable(call) else None
    return e.value.code(), e.value.details() or ""


def test_out_of_range_times_and_seq_are_invalid_argument(fwd: ForwarderHandle) -> None:
    ch, stub = _stub(fwd)
    try:
        _ingest(stub, "a", [[_pair(1)]])
        huge = fpb.Filter()
        huge.since.seconds = 1 << 62
        code, details = _code(lambda: list(stub.Export(fpb.ExportRequest(filter=huge))))  # type: ignore[attr-defined]
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "filter.since" in details
        neg = fpb.Filter()
        neg.until.seconds = -(1 << 62)
        code, _ = _code(lambda: stub.CreateSnapshot(fpb.CreateSnapshotRequest(filter=neg)))  # type: ignore[attr-defined]
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        code, _ = _code(lambda: list(stub.Subscribe(fpb.SubscribeRequest(filter=huge), timeout=5)))  # type: ignore[attr-defined]
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        for seq in (1 << 63, (1 << 64) - 1):
            batch = fpb.IngestBatch(agent_id="a", seq=seq, pairs=[_pair(2)])
            code, details = _code(lambda b=batch: list(stub.Ingest(iter([b]), timeout=10)))  # type: ignore[attr-defined]
            assert code == grpc.StatusCode.INVALID_ARGUMENT and "seq" in details, details
        bad = _pair(3)
        bad.ts.seconds = 1 << 62
        batch = fpb.IngestBatch(agent_id="a", seq=5, pairs=[bad])
        code, details = _code(lambda: list(stub.Ingest(iter([batch]), timeout=10)))  # type: ignore[attr-defined]
        assert code == grpc.StatusCode.INVALID_ARGUMENT and "pairs[0].ts" in details
        # the forwarder still serves, and the largest valid values work
        _ingest(stub, "a", [[_pair(4)]], first=(1 << 63) - 1)
        ok = fpb.Filter()
        ok.until.seconds = (1 << 63) // 10**9 - 1  # 2262-04-11
        assert len(list(stub.Export(fpb.ExportRequest(filter=ok)))) == 2  # type: ignore[attr-defined]
    finally:
        ch.close()


def test_store_is_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    h = serve("127.0.0.1:0", str(data))
    ch, stub = _stub(h)
    try:
        _ingest(stub, "a", [[_pair(1)]])
        assert stat.S_IMODE(data.stat().st_mode) == 0o700
        files = [p for p in data.iterdir() if p.name.startswith(DB_NAME)]
        assert {p.name for p in files} >= {DB_NAME, f"{DB_NAME}-wal"}
        for p in files:
            assert stat.S_IMODE(p.stat().st_mode) == 0o600, p
    finally:
        ch.close()
        h.stop(0)
    # an older store (0755 / 0644) is made private when opened
    os.chmod(data, 0o755)
    os.chmod(data / DB_NAME, 0o644)
    serve("127.0.0.1:0", str(data)).stop(0)
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / DB_NAME).stat().st_mode) == 0o600


@pytest.mark.root
def test_disk_full_is_reported_as_such(tmp_path: Path) -> None:
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "nodetap-test", str(mnt)], check=True)
    try:
        h = serve("127.0.0.1:0", str(mnt / "data"))
        ch, stub = _stub(h)
        try:
            batches = [[_pair(i * 8 + j, 16 * 1024) for j in range(8)] for i in range(40)]
            with pytest.raises(grpc.RpcError) as e:
                _ingest(stub, "a", batches)
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE
            details = e.value.details() or ""
            assert details.startswith("disk full") and "rollback" not in details, details
        finally:
            ch.close()
            h.stop(0)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


@pytest.mark.slow
def test_stalled_export_does_not_pin_the_wal(fwd: ForwarderHandle) -> None:
    ch, stub = _stub(fwd)
    reader = transport.channel(f"127.0.0.1:{fwd.port}")
    try:
        # 2000 RRPairs (4 MiB) stored: more rows than one read of the store, more bytes than
        # the flow-control window buffers for the stalled reader
        _ingest(stub, "a", [[_pair(i * 16 + j, 2048) for j in range(16)] for i in range(125)])
        export = client.stub(reader).Export(fpb.ExportRequest())
        assert next(export).id == "p0"  # one read, then the client stops reading
        wal = Path(fwd.store.path).with_name(DB_NAME + "-wal")  # type: ignore[attr-defined]
        for r in range(8):  # 8 x 4 MiB more while it stalls
            batches = [
                [_pair(10_000 * (r + 1) + i * 16 + j, 16 * 1024) for j in range(16)]
                for i in range(16)
            ]
            _ingest(stub, f"w{r}", batches)
        size = wal.stat().st_size
        # WAL checkpoints restart the log once no reader holds it: a few MiB, not 36
        assert size < 16 << 20, f"WAL grew to {size >> 20} MiB behind a stalled Export"
        export.cancel()
    finally:
        reader.close()
        ch.close()
