"""Helpers for the JetStream store's tests: real `nodetap forwarder --store nats://...`
processes on a test cluster, and one-call gRPC helpers (ingest a batch, export ids, health,
stats) against them."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from forwarder import client
from nodetap.errors import PeerError
from nodetap.v1 import forwarder_pb2 as fpb
from nodetap.v1 import rrpair_pb2 as pb
from tests.forwarder.helpers import ROOT, start_producer, stop
from tests.support.nats_cluster import NatsCluster, forwarder_log, start_nats_forwarder
from tests.support.servers import free_port

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


METRICS: dict[str, str] = {}  # forwarder address -> its --metrics-addr (metrics=True)


@contextlib.contextmanager
def forwarders(
    cluster: NatsCluster | str, n: int, *extra: str, metrics: bool = False
) -> Iterator[list[str]]:
    """n forwarder processes on the cluster (or a --store URL); their addresses. With
    metrics, each serves /metrics and /readyz too (see readyz)."""
    url = cluster if isinstance(cluster, str) else cluster.url
    procs: list[subprocess.Popen[bytes]] = []
    addrs: list[str] = []
    try:
        for _ in range(n):
            port = free_port()
            more = list(extra)
            if metrics:
                METRICS[f"127.0.0.1:{port}"] = f"127.0.0.1:{free_port()}"
                more += ["--metrics-addr", METRICS[f"127.0.0.1:{port}"]]
            procs.append(start_nats_forwarder(port, url, *more))
            addrs.append(f"127.0.0.1:{port}")
        yield addrs
    finally:
        for addr, p in zip(addrs, procs, strict=False):
            stop(p)
            # shown with the test's report when it fails
            print(f"--- forwarder {addr} (stderr, -v) ---\n{forwarder_log(p)}")


class LiveTail:
    """A Subscribe call on addr, open (live) when made, collecting key(pair) in a thread."""

    def __init__(self, addr: str, key: Callable[[pb.RRPair], str]) -> None:
        self.seen: list[str] = []
        self._ch = grpc.insecure_channel(addr)
        self._call = client.stub(self._ch).Subscribe(fpb.SubscribeRequest())
        self._call.initial_metadata()  # the tail is live

        def run() -> None:
            with contextlib.suppress(grpc.RpcError):  # CANCELLED at the end
                for p in self._call:
                    self.seen.append(key(p))

        threading.Thread(target=run, daemon=True).start()

    def wait_count(self, n: int, timeout: float) -> list[str]:
        """What it saw, sorted, once it saw n (or after timeout)."""
        deadline = time.monotonic() + timeout
        while len(self.seen) < n and time.monotonic() < deadline:
            time.sleep(0.1)
        return sorted(self.seen)

    def close(self) -> None:
        self._call.cancel()
        self._ch.close()


def nginx_producer(addr: str, web_port: int, prefix: str, n: int, *extra: str) -> Any:
    """The real agent sink (tests/forwarder/producer.py) sending n RRPairs of real nginx
    exchanges to addr, one every 10 ms, holding its end until told (see producer.py)."""
    return start_producer(
        addr,
        "--target-port",
        str(web_port),
        "--count",
        str(n),
        "--id-prefix",
        prefix,
        "--interval",
        "0.01",
        "--hold",
        *extra,
    )


def export_ids(addr: str, flt: fpb.Filter | None = None, snapshot_id: str = "") -> list[str]:
    return [p.id for p in client.export_pairs(addr, flt=flt, snapshot_id=snapshot_id)]


def export_after_failover(addr: str, timeout: float = 180) -> list[pb.RRPair]:
    """Every stored RRPair, read from addr as a client does right after a NATS node was lost:
    a read that meets the failover (the stream or the client still moving) is UNAVAILABLE,
    and is asked again (the README's contract: a stalled read is an error, never short)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return list(client.export_pairs(addr))
        except PeerError as e:
            if "store unavailable" not in str(e) or time.monotonic() > deadline:
                raise
            print(f"export from {addr}: {e}; again")
            time.sleep(1)


def pairs(prefix: str, n: int, size: int = 100) -> list[pb.RRPair]:
    """n RRPairs prefix-0..prefix-(n-1), node-1/shop, inbound, captured now."""
    out = []
    for i in range(n):
        p = pb.RRPair(id=f"{prefix}-{i}", l7protocol="http", direction=pb.INBOUND)
        p.ts.FromNanoseconds(time.time_ns())
        p.meta.node, p.meta.namespace = "node-1", "shop"
        p.http.req.method, p.http.req.url = "POST", f"/{prefix}/{i}"
        p.http.req.body = b"x" * size
        out.append(p)
    return out


def ingest(addr: str, agent_id: str, seq: int, batch: list[pb.RRPair]) -> fpb.IngestAck:
    with grpc.insecure_channel(addr) as ch:
        acks = client.stub(ch).Ingest(
            iter([fpb.IngestBatch(agent_id=agent_id, seq=seq, pairs=batch)]), timeout=30
        )
        ack: fpb.IngestAck = next(iter(acks))
        return ack


def stats(addr: str) -> fpb.StatsResponse:
    with grpc.insecure_channel(addr) as ch:
        resp: fpb.StatsResponse = client.stub(ch).Stats(fpb.StatsRequest(), timeout=10)
        return resp


def health(addr: str) -> int:
    with grpc.insecure_channel(addr) as ch:
        req = health_pb2.HealthCheckRequest(service="nodetap.v1.Forwarder")
        return int(health_pb2_grpc.HealthStub(ch).Check(req, timeout=5).status)


def readyz(addr: str) -> int:
    """The HTTP status of the forwarder's /readyz (started with metrics=True)."""
    try:
        with urllib.request.urlopen(f"http://{METRICS[addr]}/readyz", timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as e:
        return int(e.code)


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"not {what} after {timeout}s")


def expected(prefix: str, n: int) -> list[str]:
    """The ids the producer gives n RRPairs with --id-prefix prefix."""
    return sorted(f"{prefix}-{i}" for i in range(1, n + 1))


def forwarder_error(*args: str) -> str:
    """The one line `nodetap forwarder --listen 127.0.0.1:0 ARGS` exits 2 with."""
    r = subprocess.run(
        [sys.executable, "-m", "cli", "forwarder", "--listen", "127.0.0.1:0", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr  # one line, no traceback
    return lines[0]
