"""Subscribe cannot deny service (issue 22): 64 idle subscribers and one that never reads, while
an agent keeps ingesting; a subscriber's buffer is bounded in bytes."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import grpc
import pytest

from agent.sinks.forwarder import ForwarderSink
from forwarder import client
from forwarder.live_tail import Hub
from nodetap import transport
from nodetap.v1 import forwarder_pb2 as fpb
from nodetap.v1 import rrpair_pb2 as pb
from tests.forwarder.helpers import forwarder_process, stored
from tests.support.servers import free_port


def _pair(i: int, size: int) -> pb.RRPair:
    p = pb.RRPair(id=f"b{i}")
    p.ts.FromNanoseconds(time.time_ns())
    p.http.req.method = "POST"
    p.http.req.url = f"/upload/{i}"
    p.http.req.body = bytes([i % 251]) * size
    return p


def test_buffer_is_bounded_in_bytes() -> None:
    hub = Hub(queue_size=10_000, queue_bytes=4 << 20)
    sub = hub.add(fpb.Filter())
    hub.publish(_pair(i, 1 << 20) for i in range(64))  # 64 MiB offered to a 4 MiB buffer
    assert sub.buffered_bytes <= 4 << 20
    assert sub.dropped == 64 - 3
    got = [sub.take(0) for _ in range(4)]
    assert [p.id for p in got if p] == ["b0", "b1", "b2"]  # in order, nothing after the hole
    hub.publish([_pair(99, 10)])
    assert sub.take(0) is None  # once it dropped, it takes nothing more: no hole in the middle
    hub.remove(sub)


def test_idle_and_stalled_subscribers_do_not_stop_ingest(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"
    with forwarder_process(port, data) as fwd:  # the defaults: --max-streams 64
        addr = f"127.0.0.1:{port}"
        chans = [transport.channel(addr) for _ in range(4)]
        try:
            # one subscriber that never reads what it asked for
            stalled = client.stub(chans[0]).Subscribe(fpb.SubscribeRequest())
            stalled.initial_metadata()
            # 64 idle subscribers: some are served, the rest refused at once
            idle = [
                client.stub(chans[1 + i % 3]).Subscribe(fpb.SubscribeRequest()) for i in range(64)
            ]
            time.sleep(1)
            refused = sum(
                1 for c in idle if c.done() and c.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            )
            assert refused >= 64 - 16 + 1, refused  # --max-readers 16, the stalled one included
            # the agent ingests 40 MiB (2.5 x a subscriber's buffer) and every batch is acked
            sink = ForwarderSink(addr, batch_max_pairs=8, compression="none")
            pairs = [_pair(i, 64 * 1024) for i in range(640)]
            for p in pairs:
                sink.put(p)
            assert sink.flush(120) is True, sink.counters()
            sink.close(1)
            # the stalled subscriber was cut with RESOURCE_EXHAUSTED, saying why (it reads what
            # had reached it before the cut, then the status)
            time.sleep(3)  # the cut comes 2 s after its buffer overflowed
            with pytest.raises(grpc.RpcError) as err:
                for _ in stalled:
                    pass
            assert err.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "subscriber too slow" in (err.value.details() or "")
            # the idle subscribers that were served still are, and see new RRPairs
            live = [c for c in idle if not c.done()]
            assert live and len(live) <= 16
            got: list[str] = []
            t = threading.Thread(target=lambda: got.append(next(live[0]).id), daemon=True)
            t.start()
            sink = ForwarderSink(addr, compression="none")
            sink.put(_pair(10_000, 10))
            assert sink.flush(30)
            sink.close(1)
            t.join(20)
            assert got and got[0].startswith("b")
            for c in idle:
                c.cancel()
        finally:
            for ch in chans:
                ch.close()
    assert fwd.stderr is not None
    assert "cutting a Subscribe call that stopped reading" in fwd.stderr.read().decode()
    assert len(stored(data)) == 641
