"""The forwarder on NATS JetStream, with a real 3-node nats-server cluster (Debian's package)
and real forwarder processes: two forwarders share one replicated stream, a batch is stored
once whichever forwarder gets it (within the duplicate window, and only within it), NATS
faults lose nothing and duplicate nothing, retention and snapshots. The agent side is the real
ForwarderSink (tests/forwarder/producer.py) sending RRPairs of real nginx exchanges. Secured
NATS (credentials, TLS): test_jetstream_auth.py."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import nats
import pytest

from forwarder import client
from nodetap.v1 import forwarder_pb2 as fpb
from tests.forwarder.helpers import finish_producer, read_until, start_producer, stop, stored
from tests.forwarder.nats_forwarders import (
    NOT_SERVING,
    SERVING,
    LiveTail,
    expected,
    export_after_failover,
    export_ids,
    forwarder_error,
    forwarders,
    health,
    ingest,
    nginx_producer,
    pairs,
    readyz,
    stats,
    wait_for,
)
from tests.support.nats_cluster import (
    NatsCluster,
    forwarder_log,
    nats_cluster,
    start_nats_forwarder,
)
from tests.support.servers import free_port, nginx


@pytest.fixture
def cluster() -> Iterator[NatsCluster]:
    with nats_cluster(3) as c:
        yield c


async def _stream_config(url: str) -> tuple[int, float]:
    """The RRPair stream's replicas and duplicate window (s), asked of NATS directly."""
    nc = await nats.connect(servers=url.removeprefix("nats://").split(","))
    try:
        info = await nc.jetstream().stream_info("NODETAP_RRPAIRS")
        return int(info.config.num_replicas or 0), float(info.config.duplicate_window or 0)
    finally:
        await nc.close()


# -- the command line -----------------------------------------------------------------------
def test_store_flag_errors_are_one_line(tmp_path: Path) -> None:
    assert "bad NATS server" in forwarder_error("--store", "nats://nohostport")
    assert "bad --store" in forwarder_error("--store", "redis://x:1")
    assert "give one store" in forwarder_error("--data-dir", str(tmp_path), "--store", "sqlite:x")
    assert "give one store" in forwarder_error()
    assert "need --store nats" in forwarder_error("--data-dir", str(tmp_path), "--replicas", "3")
    line = forwarder_error("--data-dir", str(tmp_path), "--nats-dup-window", "1h")
    assert "need --store nats" in line
    down = f"nats://127.0.0.1:{free_port()}"
    assert "cannot reach NATS" in forwarder_error("--store", down)
    assert "no such file" in forwarder_error("--store", down, "--nats-creds", "/nonexistent")


def test_store_sqlite_spells_out_the_default(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"
    proc = start_nats_forwarder(port, f"sqlite:{data}")  # any --store value
    try:
        assert ingest(f"127.0.0.1:{port}", "agent-q", 1, pairs("q", 3)).stored == 3
    finally:
        stop(proc)
        print(forwarder_log(proc))
    assert sorted(p.id for p in stored(data)) == ["q-0", "q-1", "q-2"]


# -- the duplicate window ---------------------------------------------------------------------
def test_duplicate_window_is_what_stores_a_resent_batch_once() -> None:
    """A batch resent within --nats-dup-window is stored once, through either forwarder; one
    resent after it is stored again (so the window must cover the agents' resend horizon,
    jetstream_stream.py). The default is 10 minutes, never more than the retention age."""
    window = 2.0
    with nats_cluster(1) as c:
        with forwarders(c, 2, "--nats-dup-window", f"{window:g}s") as (a, b):
            assert asyncio.run(_stream_config(c.url)) == (1, window)
            batch = pairs("w", 4)
            assert ingest(a, "agent-w", 1, batch).stored == 4
            assert ingest(b, "agent-w", 1, batch).duplicate  # the ack was lost: resent to B
            time.sleep(2 * window + 1)  # JetStream forgets the ids a window after (timer)
            late = ingest(b, "agent-w", 1, batch)
            assert late.stored == 4 and not late.duplicate  # beyond the window: stored again
            assert sorted(export_ids(a)) == sorted(2 * [p.id for p in batch])
        with forwarders(c, 1) as (a,):
            assert asyncio.run(_stream_config(c.url))[1] == 600.0  # the default, 10 minutes
        with forwarders(c, 1, "--retention-age", "5m", "--nats-dup-window", "1h"):
            assert asyncio.run(_stream_config(c.url))[1] == 300.0  # capped at the retention


@pytest.mark.slow
def test_agent_restarted_on_its_spool_resends_to_another_forwarder_once(
    cluster: NatsCluster, tmp_path: Path
) -> None:
    """The agents' longest ordinary resend path: forwarder A SIGKILLed (acks lost), then the
    agent SIGKILLed with unacknowledged batches in its spool; the agent's next run resends them
    (with their agent id and seq) to forwarder B, within the window: each stored once."""
    n = 200
    spool = ("--spool-dir", str(tmp_path / "spool"), "--max-memory", "4096")
    empty = tmp_path / "none.jsonl"
    empty.write_text("")
    with forwarders(cluster, 1) as (b,), nginx() as web:
        a_port = free_port()
        fa = start_nats_forwarder(a_port, cluster.url)
        prod = nginx_producer(f"127.0.0.1:{a_port}", web.port, "rs", n, *spool)
        try:
            read_until(prod, f"put {n // 2}")
            stop(fa, signal.SIGKILL)  # stored batches whose acks never left
            read_until(prod, f"put {3 * n // 4}")  # these wait in the spool
            stop(prod, signal.SIGKILL)
        finally:
            stop(fa)
            stop(prod)
            print(forwarder_log(fa))
        assert list((tmp_path / "spool").glob("*.seg"))
        again = start_producer(b, "--input", str(empty), *spool, "--hold")
        try:
            assert read_until(again, "FLUSHED", timeout=60) == "FLUSHED true"
            counters = finish_producer(again)
        finally:
            stop(again)
        assert counters["recovered"] > 0 and counters["acked"] == counters["recovered"]
        ids = export_ids(b)
    assert len(ids) == len(set(ids))  # nothing twice
    assert set(expected("rs", n // 2)) <= set(ids)  # nothing acked or spooled lost


# -- two forwarders, one stream ---------------------------------------------------------------
@pytest.mark.slow
def test_two_forwarders_share_one_stream(cluster: NatsCluster, tmp_path: Path) -> None:
    n = 120
    with forwarders(cluster, 2) as (a, b), nginx() as web:
        tail = LiveTail(b, lambda p: p.id)  # open before anything is ingested through A
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
        assert tail.wait_count(n, 20) == expected("two", n)  # B's tail saw A's ingest
        tail.close()

        # A batch resent to the other forwarder (A's ack lost) is stored once.
        batch = pairs("resent", 8)
        first = ingest(a, "agent-x", 7, batch)
        assert first.stored == 8 and not first.duplicate
        again = ingest(b, "agent-x", 7, batch)
        assert again.duplicate
        ids = export_ids(b, fpb.Filter(namespaces=["shop"]))
        assert sorted(ids) == sorted(p.id for p in batch)
        assert stats(b).pairs == n + 8
        assert health(a) == health(b) == SERVING
    assert cluster.jsz(0).get("streams", 0) == 1
    replicas, window = asyncio.run(_stream_config(cluster.url))
    assert (replicas, window) == (3, 600.0)  # defaults on a 3-node cluster: R3, 10 minutes


@pytest.mark.slow
def test_nats_node_sigkilled_mid_ingest_loses_and_duplicates_nothing(
    cluster: NatsCluster,
) -> None:
    n = 300
    with forwarders(cluster, 2) as (a, b), nginx() as web:
        prod = nginx_producer(a, web.port, "kill", n)
        try:
            read_until(prod, f"put {n // 3}")
            cluster.kill_named(cluster.meta_leader())  # SIGKILL the meta leader mid-ingest
            assert read_until(prod, "FLUSHED", timeout=120) == "FLUSHED true"
            counters = finish_producer(prod)
        finally:
            stop(prod)
        assert counters["acked"] == n
        assert counters["dropped_spool_full"] == counters["dropped_queue_full"] == 0
        # R3: written on, nothing lost (read as a client does right after a failover)
        assert sorted(p.id for p in export_after_failover(b)) == expected("kill", n)


@pytest.mark.slow
def test_export_goes_on_when_its_consumers_nats_node_is_killed_mid_read(
    cluster: NatsCluster,
) -> None:
    """A read is whole or an error, never short: the NATS server that holds the read's
    consumer is SIGKILLed while the Export streams, and the export still has every RRPair,
    once. (Which mechanism carries the read on depends on where the kill lands: the client's
    ordered consumer resetting itself, or the forwarder's resume after a stall, which then
    may wait out unanswered requests while NATS elects leaders.)"""
    n, size, batch = 3000, 4096, 250  # 12 MB: more than one read batch in flight
    sent = pairs("mid", n, size)
    with forwarders(cluster, 1) as (b,):
        for seq, start in enumerate(range(0, n, batch), 1):
            assert ingest(b, "agent-mid", seq, sent[start : start + batch]).seq == seq
        with grpc.insecure_channel(b) as ch:
            call = client.stub(ch).Export(fpb.ExportRequest(), timeout=180)
            got = [next(call).id]  # the read is open, its first batch delivered
            (leader,) = cluster.consumer_leaders("NODETAP_RRPAIRS")
            cluster.kill_named(leader)
            try:
                got += [p.id for p in call]
            except grpc.RpcError as e:
                raise AssertionError(f"the read failed after {len(got)} of {n}: {e}") from None
    assert len(got) == len(set(got)), "an RRPair came twice"
    assert sorted(got) == sorted(p.id for p in sent)


@pytest.mark.slow
def test_all_nats_down_then_back_agents_spool_and_drain_once(
    cluster: NatsCluster, tmp_path: Path
) -> None:
    n = 200
    spool = ("--spool-dir", str(tmp_path / "spool"), "--max-memory", "4096")
    with forwarders(cluster, 2, metrics=True) as (a, b), nginx() as web:
        assert readyz(a) == 200
        prod = nginx_producer(a, web.port, "down", n, *spool)
        exporter: subprocess.Popen[str] | None = None
        try:
            read_until(prod, f"put {n // 4}")
            cluster.kill_all()
            wait_for(lambda: health(a) == NOT_SERVING, 10, "NOT_SERVING on A")
            wait_for(lambda: health(b) == NOT_SERVING, 10, "NOT_SERVING on B")
            assert readyz(a) == readyz(b) == 503  # out of the Service's endpoints
            with pytest.raises(grpc.RpcError) as e:
                ingest(b, "agent-y", 1, pairs("y", 2))
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE
            # reads too: UNAVAILABLE saying why (clients retry), not UNKNOWN
            with grpc.insecure_channel(b) as ch, pytest.raises(grpc.RpcError) as e:
                client.stub(ch).Stats(fpb.StatsRequest(), timeout=30)
            assert e.value.code() == grpc.StatusCode.UNAVAILABLE, e.value
            assert "NATS JetStream" in (e.value.details() or "")
            said = str(client.rpc_error(e.value, b))  # the forwarder runs: not "unreachable"
            assert said.startswith(f"forwarder {b}: store unavailable (NATS JetStream"), said
            # `nodetap export` asks again while the store is unavailable, saying so
            err = tmp_path / "export.err"
            with err.open("w") as errf:
                exporter = subprocess.Popen(
                    [sys.executable, "-m", "cli", "export", "--forwarder", b, "-w", "-"],
                    stdout=subprocess.PIPE,
                    stderr=errf,
                    text=True,
                )
            wait_for(lambda: "asking again" in err.read_text(), 30, "the export's retry line")
            read_until(prod, f"put {3 * n // 4}")  # the capture goes on, the agent spools
            assert list((tmp_path / "spool").glob("*.seg"))
            cluster.start_all()
            cluster.wait_ready()
            out, _ = exporter.communicate(timeout=90)
            assert exporter.returncode == 0, err.read_text()
            assert f"forwarder {b}: store unavailable" in err.read_text()
            assert {json.loads(line)["id"] for line in out.splitlines()} <= set(expected("down", n))
            assert read_until(prod, "FLUSHED", timeout=120) == "FLUSHED true"
            counters = finish_producer(prod)
        finally:
            stop(prod)
            if exporter is not None and exporter.poll() is None:
                exporter.kill()
                exporter.wait()
        assert health(a) == SERVING and readyz(b) == 200
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
    with forwarders(cluster, 1, "--retention-size", "64KiB", "--replicas", "2") as (a,):
        for seq in range(1, 11):
            assert ingest(a, "agent-s", seq, pairs(f"s{seq}", 10, size=2000)).stored == 10
        ids = export_ids(a)
        assert 0 < len(ids) < 100
        assert "s10-9" in ids and "s1-0" not in ids
        assert stats(a).bytes <= 64 * 1024
    assert asyncio.run(_stream_config(cluster.url))[0] == 2  # --replicas 2 on 3 nodes
