"""The Forwarder gRPC API with real clients: live tail with filters, bearer token, export,
snapshots against retention, message size limits, health and reflection (TLS: test_tls.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from agent.sinks.forwarder import ForwarderSink
from forwarder import client
from forwarder.server import ForwarderHandle, serve
from nodetap import jsonl, transport
from nodetap.errors import NodetapError
from nodetap.v1 import forwarder_pb2 as fpb
from nodetap.v1 import rrpair_pb2 as pb
from tests.forwarder.helpers import ROOT
from tests.forwarder.traffic import Req, exchange_pairs
from tests.support.servers import nginx

TOKEN = "s3cret-token-for-tests"


@pytest.fixture
def fwd(tmp_path: Path) -> Iterator[ForwarderHandle]:
    h = serve("127.0.0.1:0", str(tmp_path / "data"), token=TOKEN)
    try:
        yield h
    finally:
        h.stop(0)


def _mixed_traffic(n: int = 10) -> list[pb.RRPair]:
    reqs: list[Req] = []
    for i in range(n):
        reqs += [
            Req("GET", f"/hello?i={i}"),
            Req("POST", f"/echo?i={i}", [("Content-Type", "text/plain")], b"x" * (i + 1)),
            Req("GET", f"/status/204?i={i}"),
            Req("GET", f"/missing/{i}"),
        ]
    with nginx() as web:
        return list(exchange_pairs(web.port, reqs))


def _collect(call: grpc.Future, out: list[pb.RRPair]) -> None:
    try:
        for pair in call:
            out.append(pair)
    except grpc.RpcError as e:
        if e.code() != grpc.StatusCode.CANCELLED:
            raise


def test_subscribe_receives_exactly_the_matching_live_pairs(fwd: ForwarderHandle) -> None:
    addr = f"127.0.0.1:{fwd.port}"
    ch = transport.channel(addr)
    stub = client.stub(ch)
    md = transport.bearer_metadata(TOKEN)
    filters = {
        "get-2xx": fpb.Filter(methods=["get"], status_min=200, status_max=299),
        "post-echo": fpb.Filter(url_prefix="/echo", directions=[pb.OUTBOUND]),
        "4xx": fpb.Filter(status_min=400, status_max=499, protocols=["http"]),
        "other-ns": fpb.Filter(namespaces=["not-there"]),
    }
    calls: dict[str, Any] = {}
    got: dict[str, Any] = {}
    threads: list[threading.Thread] = []
    for name, flt in filters.items():
        calls[name] = stub.Subscribe(fpb.SubscribeRequest(filter=flt), metadata=md)
        calls[name].initial_metadata()  # the tail is live once headers arrive
        got[name] = []
        t = threading.Thread(target=_collect, args=(calls[name], got[name]), daemon=True)
        t.start()
        threads.append(t)
    # A client without the token is refused, for Subscribe and Export alike.
    for call in (
        stub.Subscribe(fpb.SubscribeRequest()),
        stub.Export(fpb.ExportRequest()),
        stub.Subscribe(fpb.SubscribeRequest(), metadata=transport.bearer_metadata("wrong")),
    ):
        with pytest.raises(grpc.RpcError) as err:
            list(call)
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED

    pairs = _mixed_traffic(10)
    sink = ForwarderSink(addr, token=TOKEN)
    for p in pairs:
        sink.put(p)
    assert sink.flush(20)
    sink.close(1)
    want = {
        "get-2xx": {
            p.id for p in pairs if p.http.req.method == "GET" and p.http.res.status_code < 300
        },
        "post-echo": {p.id for p in pairs if p.http.req.url.startswith("/echo")},
        "4xx": {p.id for p in pairs if 400 <= p.http.res.status_code < 500},
        "other-ns": set(),
    }
    assert len(want["get-2xx"]) == 20 and len(want["post-echo"]) == 10 and len(want["4xx"]) == 10
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(len(got[k]) < len(want[k]) for k in filters):
        time.sleep(0.05)
    time.sleep(0.3)  # anything extra would arrive now
    for call in calls.values():
        call.cancel()
    for t in threads:
        t.join(5)
    for name in filters:
        ids = [p.id for p in got[name]]
        assert len(ids) == len(set(ids)), name
        assert set(ids) == want[name], name
    ch.close()


def _cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=ROOT,
        text=True,
        capture_output=True,
        timeout=60,
        check=check,
    )


def _ingest(addr: str, batches: list[fpb.IngestBatch], token: str = TOKEN) -> list[fpb.IngestAck]:
    ch = transport.channel(addr)
    try:
        return list(
            client.stub(ch).Ingest(iter(batches), metadata=transport.bearer_metadata(token))
        )
    finally:
        ch.close()


@pytest.mark.slow
def test_export_snapshots_and_retention_via_cli(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    # First run without retention: old RRPairs arrive, a snapshot freezes some of them.
    h = serve("127.0.0.1:0", str(tmp_path / "data"), token=TOKEN)
    pairs = _mixed_traffic(5)  # 20 RRPairs
    old_ns = time.time_ns() - 2 * 86400 * 10**9
    old = []
    for i, p in enumerate(pairs[:8]):  # pretend 8 of them were captured two days ago
        q = pb.RRPair()
        q.CopyFrom(p)
        q.id = f"old-{i}"
        q.ts.FromNanoseconds(old_ns + i)
        old.append(q)
    try:
        addr = f"127.0.0.1:{h.port}"
        auth = ["--forwarder", addr, "--token-file", str(token_file)]
        assert [
            a.stored for a in _ingest(addr, [fpb.IngestBatch(agent_id="o", seq=1, pairs=old)])
        ] == [8]
        snap = _cli(
            "snapshot",
            "create",
            *auth,
            "--until",
            "1d",
            "--filter",
            "method=POST",
            "--name",
            "old-posts",
        )
        sid = snap.stdout.strip()
        assert sid.startswith("snap-")
    finally:
        h.stop(0)
    # Restart with retention (1 h): the old RRPairs go, except the snapshot's.
    h = serve(
        "127.0.0.1:0",
        str(tmp_path / "data"),
        token=TOKEN,
        retention_age=3600,
        retention_interval=0.2,
    )
    try:
        addr = f"127.0.0.1:{h.port}"
        auth = ["--forwarder", addr, "--token-file", str(token_file)]
        acks = _ingest(
            addr,
            [
                fpb.IngestBatch(agent_id="a", seq=1, pairs=pairs),
                fpb.IngestBatch(agent_id="a", seq=1, pairs=pairs),
            ],
        )
        assert [a.duplicate for a in acks] == [False, True]
        deadline = time.monotonic() + 30
        while h.store.stats().pairs != 20 + 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        kept = {p.id for p in h.store.query(fpb.Filter())}
        old_posts = {q.id for q in old if q.http.req.method == "POST"}
        assert len(old_posts) == 2
        assert kept == {p.id for p in pairs} | old_posts  # retention spared the snapshot

        listed = _cli("snapshot", "list", *auth, "--json").stdout.splitlines()
        assert [json.loads(x)["id"] for x in listed] == [sid]
        assert json.loads(listed[0])["count"] == 2  # a number (issue 25)
        # the library call replay uses
        assert {p.id for p in client.export_pairs(addr, snapshot_id=sid, token=TOKEN)} == old_posts
        with pytest.raises(NodetapError, match="NOT_FOUND"):
            list(client.export_pairs(addr, snapshot_id="snap-nope", token=TOKEN))
        out = _cli("snapshot", "export", sid, *auth, "--format", "jsonl").stdout
        assert {jsonl.loads(x).id for x in out.splitlines()} == old_posts

        # export with filters and a time range, JSONL to a file
        dest = tmp_path / "posts.jsonl"
        _cli(
            "export",
            *auth,
            "--since",
            "10m",
            "--filter",
            "method=POST",
            "--filter",
            "status=2xx",
            "-o",
            str(dest),
        )
        got = [p.id for p in jsonl.read_path(str(dest))]
        assert sorted(got) == sorted(p.id for p in pairs if p.http.req.method == "POST")

        # no token: one clear line, no traceback
        bad = _cli("export", "--forwarder", addr, check=False)
        assert bad.returncode == 2 and "refused the token" in bad.stderr
        assert "Traceback" not in bad.stderr

        _cli("snapshot", "delete", sid, *auth)
        deadline = time.monotonic() + 30
        while h.store.stats().pairs != 20 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert {p.id for p in h.store.query(fpb.Filter())} == {p.id for p in pairs}
        gone = _cli("snapshot", "export", sid, *auth, check=False)
        assert gone.returncode == 2 and "NOT_FOUND" in gone.stderr
    finally:
        h.stop(0)


def test_retention_by_size_keeps_newest(tmp_path: Path) -> None:
    h = serve("127.0.0.1:0", str(tmp_path / "data"))
    try:
        pairs = []
        for i in range(50):
            p = pb.RRPair(id=f"s-{i}")
            p.ts.FromNanoseconds(1_000_000_000 * (i + 1))
            p.http.req.body = b"z" * 1000
            pairs.append(p)
        h.store.append("a", 1, pairs)
        deleted = h.store.enforce_retention(None, 20_000)
        left = [p.id for p in h.store.query(fpb.Filter())]
        assert deleted == 50 - len(left) and 15 <= len(left) < 20
        assert left == [f"s-{i}" for i in range(50 - len(left), 50)]
    finally:
        h.stop(0)


def test_message_size_limit_is_clear(tmp_path: Path) -> None:
    limit = 64 * 1024
    h = serve("127.0.0.1:0", str(tmp_path / "data"), max_message_bytes=limit)
    try:
        addr = f"127.0.0.1:{h.port}"
        big = pb.RRPair(id="big")
        big.http.req.body = b"b" * (limit * 2)
        with pytest.raises(grpc.RpcError) as err:
            _ingest(addr, [fpb.IngestBatch(agent_id="a", seq=1, pairs=[big])])
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "larger than max" in (err.value.details() or "")
        # The sink refuses such a pair up front (counted) and sends the rest.
        sink = ForwarderSink(addr, max_message_bytes=limit)
        small = pb.RRPair(id="small")
        sink.put(big)
        sink.put(small)
        assert sink.flush(10)
        sink.close(1)
        assert sink.counters()["dropped_too_large"] == 1
        assert [p.id for p in h.store.query(fpb.Filter())] == ["small"]
        # A sink that believes in a larger limit: the forwarder refuses the batch, the sink
        # drops it (counted, logged) and goes on with the next ones.
        sink = ForwarderSink(addr, max_message_bytes=limit * 4, batch_max_pairs=1)
        sink.put(big)
        after = pb.RRPair(id="after")
        sink.put(after)
        assert sink.flush(20)
        sink.close(1)
        c = sink.counters()
        assert c["dropped_too_large"] == 1 and c["acked"] == 1
        assert [p.id for p in h.store.query(fpb.Filter())] == ["small", "after"]
    finally:
        h.stop(0)


def test_health_and_reflection_need_no_token(fwd: ForwarderHandle) -> None:
    ch = grpc.insecure_channel(f"127.0.0.1:{fwd.port}")
    try:
        health = health_pb2_grpc.HealthStub(ch)
        resp = health.Check(health_pb2.HealthCheckRequest(service="nodetap.v1.Forwarder"))
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(ch)
        answers = list(
            refl.ServerReflectionInfo(
                iter([reflection_pb2.ServerReflectionRequest(list_services="")])
            )
        )
        names = {s.name for s in answers[0].list_services_response.service}
        assert "nodetap.v1.Forwarder" in names and "grpc.health.v1.Health" in names
    finally:
        ch.close()


def test_forwarder_command_token_file_and_metrics(tmp_path: Path) -> None:
    import urllib.request

    from tests.forwarder.helpers import forwarder_process
    from tests.support.servers import free_port, wait_for_port

    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    port, mport = free_port(), free_port()
    with forwarder_process(
        port,
        tmp_path / "data",
        "--token-file",
        str(token_file),
        "--metrics-addr",
        f"127.0.0.1:{mport}",
    ):
        wait_for_port("127.0.0.1", mport)
        refused = ForwarderSink(f"127.0.0.1:{port}", token="wrong")
        refused.put(pb.RRPair(id="nope"))
        deadline = time.monotonic() + 30
        while refused.counters()["reconnects"] < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert refused.flush(0.5) is False
        refused.close(0.1)
        assert refused.counters()["acked"] == 0 and refused.counters()["reconnects"] >= 1
        sink = ForwarderSink(f"127.0.0.1:{port}", token=TOKEN)
        for i in range(5):
            sink.put(pb.RRPair(id=f"m-{i}"))
        assert sink.flush(20)
        sink.close(1)
        text = urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=10).read()
    lines = text.decode().splitlines()
    assert "nodetap_forwarder_pairs_stored_total 5.0" in lines
    assert any(
        x.startswith("nodetap_forwarder_auth_refused_total") and not x.endswith(" 0.0")
        for x in lines
    )


def test_slow_subscriber_is_told_not_silently_starved(tmp_path: Path) -> None:
    h = serve("127.0.0.1:0", str(tmp_path / "data"), subscriber_queue=5)
    try:
        addr = f"127.0.0.1:{h.port}"
        ch = transport.channel(addr)
        call = client.stub(ch).Subscribe(fpb.SubscribeRequest())
        call.initial_metadata()
        # 300 RRPairs published at once into a 5-RRPair queue: the tail cannot keep up.
        h.hub.publish([pb.RRPair(id=f"slow-{i}") for i in range(300)])
        got = []
        with pytest.raises(grpc.RpcError) as err:
            for p in call:  # read only now
                got.append(p.id)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "subscriber too slow" in (err.value.details() or "")
        assert 0 < len(got) < 300
        assert got == [f"slow-{i}" for i in range(len(got))]  # in order, no holes before the end
        ch.close()
    finally:
        h.stop(0)


def test_one_spool_dir_per_agent(tmp_path: Path) -> None:
    spool = str(tmp_path / "spool")
    first = ForwarderSink("127.0.0.1:1", spool_dir=spool)
    try:
        with pytest.raises(NodetapError, match="in use by another process"):
            ForwarderSink("127.0.0.1:1", spool_dir=spool)
    finally:
        first.close(0.1)
    ForwarderSink("127.0.0.1:1", spool_dir=spool).close(0.1)  # free again once closed
