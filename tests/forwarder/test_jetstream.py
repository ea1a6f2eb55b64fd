"""The forwarder on NATS JetStream, with a real 3-node nats-server cluster (Debian's package)
and real forwarder processes: two forwarders share one replicated stream, a batch is stored
once whichever forwarder gets it, NATS faults lose nothing and duplicate nothing, retention
and snapshots. The agent side is the real ForwarderSink (tests/forwarder/producer.py) sending
RRPairs of real nginx exchanges."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import nats
import nkeys
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from forwarder import client
from nodetap.v1 import forwarder_pb2 as fpb
from nodetap.v1 import rrpair_pb2 as pb
from tests.forwarder.helpers import (
    ROOT,
    finish_producer,
    read_until,
    start_producer,
    stop,
    stored,
)
from tests.forwarder.pki import make_pki
from tests.support.nats_cluster import NatsCluster, nats_cluster, start_nats_forwarder
from tests.support.servers import free_port, nginx


@pytest.fixture
def cluster() -> Iterator[NatsCluster]:
    with nats_cluster(3) as c:
        yield c


@contextlib.contextmanager
def forwarders(cluster: NatsCluster, n: int, *extra: str) -> Iterator[list[str]]:
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for _ in range(n):
            port = free_port()
            procs.append(start_nats_forwarder(port, cluster.url, *extra))
            procs[-1].port = port  # type: ignore[attr-defined]
        yield [f"127.0.0.1:{p.port}" for p in procs]  # type: ignore[attr-defined]
    finally:
        for p in procs:
            stop(p)


def export_ids(addr: str, flt: fpb.Filter | None = None, snapshot_id: str = "") -> list[str]:
    return [p.id for p in client.export_pairs(addr, flt=flt, snapshot_id=snapshot_id)]


def pairs(prefix: str, n: int, size: int = 100) -> list[pb.RRPair]:
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


def health(addr: str) -> int:
    with grpc.insecure_channel(addr) as ch:
        req = health_pb2.HealthCheckRequest(service="nodetap.v1.Forwarder")
        return int(health_pb2_grpc.HealthStub(ch).Check(req, timeout=5).status)


def wait_for(cond: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"not {what} after {timeout}s")


def expected(prefix: str, n: int) -> list[str]:
    return sorted(f"{prefix}-{i}" for i in range(1, n + 1))


# -- the command line -----------------------------------------------------------------------
def _forwarder_error(*args: str) -> str:
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


def test_store_flag_errors_are_one_line(tmp_path: Path) -> None:
    assert "bad NATS server" in _forwarder_error("--store", "nats://nohostport")
    assert "bad --store" in _forwarder_error("--store", "redis://x:1")
    assert "give one store" in _forwarder_error("--data-dir", str(tmp_path), "--store", "sqlite:x")
    assert "give one store" in _forwarder_error()
    assert "need --store nats" in _forwarder_error("--data-dir", str(tmp_path), "--replicas", "3")
    down = f"nats://127.0.0.1:{free_port()}"
    assert "cannot reach NATS" in _forwarder_error("--store", down)
    assert "no such file" in _forwarder_error("--store", down, "--nats-creds", "/nonexistent")


def test_store_sqlite_spells_out_the_default(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"
    proc = start_nats_forwarder(port, f"sqlite:{data}")  # any --store value
    try:
        assert ingest(f"127.0.0.1:{port}", "agent-q", 1, pairs("q", 3)).stored == 3
    finally:
        stop(proc)
    assert sorted(p.id for p in stored(data)) == ["q-0", "q-1", "q-2"]


def test_bad_nats_credentials_are_refused_clearly(tmp_path: Path) -> None:
    allowed = nkeys.from_seed(nkeys.encode_seed(b"\x01" * 32, nkeys.PREFIX_BYTE_USER))
    other_seed = nkeys.encode_seed(b"\x02" * 32, nkeys.PREFIX_BYTE_USER)
    auth = f"authorization {{ users: [ {{ nkey: {allowed.public_key.decode()} }} ] }}\n"
    creds = tmp_path / "user.creds"
    creds.write_text(
        "-----BEGIN NATS USER JWT-----\neyJ0eXAiOiJKV1QiLCJhbGciOiJlZDI1NTE5In0.e30.c2ln\n"
        "------END NATS USER JWT------\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{other_seed.decode()}\n------END USER NKEY SEED------\n"
    )
    with nats_cluster(1, extra_conf=auth) as c:
        line = _forwarder_error("--store", c.url, "--nats-creds", str(creds))
    assert "refused the credentials" in line


def test_nats_over_tls_with_the_ca_file(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki", ("server",))
    tls = f'tls {{ cert_file: "{pki / "server.crt"}", key_file: "{pki / "server.key"}" }}\n'
    with nats_cluster(1, extra_conf=tls) as c:
        # Without the CA the server's certificate is not trusted: a clear one-line error.
        line = _forwarder_error("--store", c.url)
        assert "cannot reach NATS" in line or "does not answer" in line
        port = free_port()
        proc = start_nats_forwarder(port, c.url, "--nats-tls-ca", str(pki / "ca.crt"))
        try:
            assert ingest(f"127.0.0.1:{port}", "agent-t", 1, pairs("t", 2)).stored == 2
            assert sorted(export_ids(f"127.0.0.1:{port}")) == ["t-0", "t-1"]
        finally:
            stop(proc)


# -- two forwarders, one stream ---------------------------------------------------------------
@pytest.mark.slow
def test_two_forwarders_share_one_stream(cluster: NatsCluster, tmp_path: Path) -> None:
    n = 120
    with forwarders(cluster, 2) as (a, b), nginx() as web:
        # A live tail on B, open before anything is ingested through A.
        seen: list[str] = []
        ch = grpc.insecure_channel(b)
        call = client.stub(ch).Subscribe(fpb.SubscribeRequest())
        call.initial_metadata()  # the tail is live

        def tail() -> None:
            with contextlib.suppress(grpc.RpcError):  # CANCELLED at the end
                for p in call:
                    seen.append(p.id)

        t = threading.Thread(target=tail, daemon=True)
        t.start()
        prod = start_producer(
            a, "--target-port", str(web.port), "--count", str(n), "--id-prefix", "two"
        )
        try:
            assert read_until(prod, "FLUSHED") == "FLUSHED true"
            counters = finish_producer(prod)
        finally:
            stop(prod)
        assert len(web.access_log_lines()) == n
        assert counters["acked"] == n
        assert sorted(export_ids(b)) == expected("two", n)  # all of A's, served by B, once
        assert sorted(export_ids(a)) == expected("two", n)
        wait_for(lambda: len(seen) >= n, 20, "all pairs seen by B's Subscribe")
        call.cancel()
        ch.close()
        assert sorted(seen) == expected("two", n)

        # A batch resent to the other forwarder (A's ack lost) is stored once.
        batch = pairs("resent", 8)
        first = ingest(a, "agent-x", 7, batch)
        assert first.stored == 8 and not first.duplicate
        again = ingest(b, "agent-x", 7, batch)
        assert again.duplicate
        ids = export_ids(b, fpb.Filter(namespaces=["shop"]))
        assert sorted(ids) == sorted(p.id for p in batch)
        with grpc.insecure_channel(b) as ch2:
            stats = client.stub(ch2).Stats(fpb.StatsRequest(), timeout=10)
        assert stats.pairs == n + 8
        assert health(a) == health(b) == health_pb2.HealthCheckResponse.SERVING
    assert cluster.jsz(0).get("streams", 0) == 1
    assert asyncio.run(_replicas(cluster.url)) == 3  # the default on a 3-node cluster: R3


async def _replicas(url: str) -> int:
    nc = await nats.connect(servers=url.removeprefix("nats://").split(","))
    try:
        info = await nc.jetstream().stream_info("NODETAP_RRPAIRS")
        return int(info.config.num_replicas or 0)
    finally:
        await nc.close()


@pytest.mark.slow
def test_nats_node_sigkilled_mid_ingest_loses_and_duplicates_nothing(
    cluster: NatsCluster,
) -> None:
    n = 300
    with forwarders(cluster, 2) as (a, b), nginx() as web:
        prod = start_producer(
            a,
            "--target-port",
            str(web.port),
            "--count",
            str(n),
            "--id-prefix",
            "kill",
            "--interval",
            "0.01",
            "--hold",
        )
        try:
            read_until(prod, f"put {n // 3}")
            leader = cluster.meta_leader()
            victim = next(i for i, nd in enumerate(cluster.nodes) if nd.name == leader)
            cluster.kill(victim)  # SIGKILL the JetStream meta leader mid-ingest
            assert read_until(prod, "FLUSHED", timeout=120) == "FLUSHED true"
            counters = finish_producer(prod)
        finally:
            stop(prod)
        assert counters["acked"] == n
        assert counters["dropped_spool_full"] == counters["dropped_queue_full"] == 0
        assert sorted(export_ids(b)) == expected("kill", n)  # R3: written on, nothing lost


@pytest.mark.slow
def test_all_nats_down_then_back_agents_spool_and_drain_once(
    cluster: NatsCluster, tmp_path: Path
) -> None:
    n = 200
    with forwarders(cluster, 2) as (a, b), nginx() as web:
        prod = start_producer(
            a,
            "--target-port",
            str(web.port),
            "--count",
            str(n),
            "--id-prefix",
            "down",
            "--interval",
            "0.01",
            "--spool-dir",
            str(tmp_path / "spool"),
            "--max-memory",
            "4096",
            "--hold",
        )
        try:
            read_until(prod, f"put {n // 4}")
            cluster.kill_all()
            not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
            wait_for(lambda: health(a) == not_serving, 10, "NOT_SERVING on A")
            wait_for(lambda: health(b) == not_serving, 10, "NOT_SERVING on B")
            with pytest.raises(grpc.RpcError) as e:
                ingest(b, "agent-y", 1, pairs("y", 2))
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE
            read_until(prod, f"put {3 * n // 4}")  # the capture goes on, the agent spools
            assert list((tmp_path / "spool").glob("*.seg"))
            cluster.start_all()
            cluster.wait_ready()
            assert read_until(prod, "FLUSHED", timeout=120) == "FLUSHED true"
            counters = finish_producer(prod)
        finally:
            stop(prod)
        assert health(a) == health_pb2.HealthCheckResponse.SERVING
        assert counters["acked"] == n and counters["spooled"] > 0
        assert sorted(export_ids(b)) == expected("down", n)  # drained, each exactly once


# -- retention and snapshots ------------------------------------------------------------------
@pytest.mark.slow
def test_retention_by_age_spares_snapshots(cluster: NatsCluster) -> None:
    with forwarders(cluster, 2, "--retention-age", "3s", "--retention-interval", "1") as (a, b):
        assert ingest(a, "agent-r", 1, pairs("old", 5)).stored == 5
        with grpc.insecure_channel(b) as ch:
            stub = client.stub(ch)
            snap = stub.CreateSnapshot(
                fpb.CreateSnapshotRequest(name="keep", filter=fpb.Filter(namespaces=["shop"])),
                timeout=30,
            )
            assert snap.count == 5
            wait_for(lambda: export_ids(a) == [], 15, "retention done")
            assert sorted(export_ids(a, snapshot_id=snap.id)) == sorted(
                f"old-{i}" for i in range(5)
            )
            listed = stub.ListSnapshots(fpb.ListSnapshotsRequest(), timeout=10).snapshots
            assert [s.id for s in listed] == [snap.id]
            assert stub.DeleteSnapshot(fpb.DeleteSnapshotRequest(id=snap.id), timeout=10).deleted
            with pytest.raises(grpc.RpcError) as e:
                list(stub.Export(fpb.ExportRequest(snapshot_id=snap.id), timeout=10))
            assert e.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.slow
def test_retention_by_size_keeps_the_newest(cluster: NatsCluster) -> None:
    with forwarders(cluster, 1, "--retention-size", "64KiB") as (a,):
        for seq in range(1, 11):
            assert ingest(a, "agent-s", seq, pairs(f"s{seq}", 10, size=2000)).stored == 10
        ids = export_ids(a)
        assert 0 < len(ids) < 100
        assert "s10-9" in ids and "s1-0" not in ids
        with grpc.insecure_channel(a) as ch:
            stats = client.stub(ch).Stats(fpb.StatsRequest(), timeout=10)
        assert stats.bytes <= 64 * 1024
