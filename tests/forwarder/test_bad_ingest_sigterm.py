"""SIGTERM is honoured after an Ingest stream carrying an undeserializable message (issue 22):
the call fails with a gRPC error, the forwarder keeps serving, then stops on SIGTERM."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc

from nodetap.v1 import forwarder_pb2 as fpb
from tests.forwarder.helpers import start_forwarder, stop, stored
from tests.support.servers import free_port

GARBAGE = b"\xff\xff\xff\xff\x0f"  # a varint that never ends: not an IngestBatch


def test_sigterm_after_an_undeserializable_ingest_message(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"
    fwd = start_forwarder(port, data)
    hold = threading.Event()
    try:
        ch = grpc.insecure_channel(f"127.0.0.1:{port}")
        ingest = ch.stream_stream("/nodetap.v1.Forwarder/Ingest")

        def requests() -> Iterator[bytes]:
            yield fpb.IngestBatch(agent_id="a", seq=1).SerializeToString()
            yield GARBAGE
            hold.wait(30)  # the client keeps its side of the stream open

        codes = []
        for reqs in (iter([GARBAGE]), requests()):
            try:
                list(ingest(reqs, timeout=20))
            except grpc.RpcError as e:
                codes.append(e.code())
        assert codes == [grpc.StatusCode.INTERNAL] * 2
        # still serving
        good = fpb.IngestBatch(agent_id="a", seq=2).SerializeToString()
        assert len(list(ingest(iter([good]), timeout=20))) == 1
        t0 = time.monotonic()
        fwd.send_signal(signal.SIGTERM)
        fwd.wait(timeout=15)
        assert fwd.returncode == 0 and time.monotonic() - t0 < 15
        ch.close()
    finally:
        hold.set()
        stop(fwd)
    assert fwd.stderr is not None
    err = fwd.stderr.read().decode()
    assert "Traceback" not in err and "Exception deserializing message" in err
    assert stored(data) == []  # the batches were empty; the store opens cleanly
