"""Nothing lost, nothing duplicated: forwarder kill -9, forwarder absent, spool bound, corrupt
spool records, and a network partition — with real processes and real HTTP traffic."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from agent.sinks.forwarder import ForwarderSink
from agent.sinks.outbox import MAGIC
from nodetap import jsonl
from nodetap.v1 import rrpair_pb2 as pb
from tests.forwarder.helpers import (
    finish_producer,
    forwarder_argv,
    forwarder_process,
    read_until,
    start_forwarder,
    start_producer,
    stop,
    stored,
)
from tests.forwarder.traffic import Req, exchange_pairs
from tests.support.servers import free_port, nginx


def _ids(pairs: list[pb.RRPair]) -> list[str]:
    return [p.id for p in pairs]


@pytest.mark.slow
def test_kill9_forwarder_mid_capture_stores_each_pair_once(tmp_path: Path) -> None:
    n = 300
    port = free_port()
    data = tmp_path / "data"
    with nginx() as web:
        fwd = start_forwarder(port, data)
        prod = start_producer(
            f"127.0.0.1:{port}",
            "--target-port",
            str(web.port),
            "--count",
            str(n),
            "--id-prefix",
            "k9",
            "--interval",
            "0.01",
            "--hold",
        )
        try:
            read_until(prod, f"put {n // 3}")
            fwd.send_signal(signal.SIGKILL)  # in the middle of the capture
            fwd.wait()
            read_until(prod, f"put {n // 2}")  # capture goes on while the forwarder is gone
            fwd = start_forwarder(port, data)
            assert read_until(prod, "FLUSHED") == "FLUSHED true"
            counters = finish_producer(prod)
        finally:
            stop(prod)
            stop(fwd)
        assert len(web.access_log_lines()) == n  # n real requests were served
    pairs = stored(data)
    ids = _ids(pairs)
    assert len(ids) == n
    assert sorted(ids) == sorted(f"k9-{i}" for i in range(1, n + 1))  # each exactly once
    assert counters["put"] == n and counters["acked"] == n
    assert counters["reconnects"] >= 1
    assert counters["dropped_spool_full"] == counters["dropped_queue_full"] == 0


def _big_pairs(count: int, size: int) -> list[pb.RRPair]:
    out = []
    for i in range(count):
        p = pb.RRPair(id=f"big-{i}", l7protocol="http")
        p.ts.FromNanoseconds(time.time_ns())
        p.http.req.method = "POST"
        p.http.req.url = f"/upload/{i}"
        p.http.req.body = bytes([65 + i % 26]) * size
        p.http.req.body_size = size
        out.append(p)
    return out


def test_forwarder_never_comes_back_spool_bound_then_recovered(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    spool = tmp_path / "spool"
    bound = 256 * 1024
    sink = ForwarderSink(
        f"127.0.0.1:{port}",
        spool_dir=str(spool),
        max_memory_bytes=64 * 1024,
        max_spool_bytes=bound,
        batch_max_pairs=4,
    )
    pairs = _big_pairs(100, 8 * 1024)  # ~800 KiB: more than memory and spool together
    for p in pairs:
        sink.put(p)
    assert sink.flush(1.0) is False
    sink.close(0.5)
    c = sink.counters()
    files = list(spool.glob("*.seg"))
    on_disk = sum(f.stat().st_size for f in files)
    assert files and on_disk <= bound
    assert c["put"] == 100
    assert c["acked"] == 0 and c["spooled"] > 0 and c["dropped_spool_full"] > 0
    assert c["spooled"] + c["dropped_spool_full"] == 100  # every RRPair accounted for
    spooled = c["spooled"]

    # The next agent run finds the spool and resends it once a forwarder is there.
    data = tmp_path / "data"
    with forwarder_process(port, data):
        sink2 = ForwarderSink(f"127.0.0.1:{port}", spool_dir=str(spool))
        assert sink2.flush(30) is True
        sink2.close(1)
    c2 = sink2.counters()
    assert c2["recovered"] == spooled and c2["acked"] == spooled and c2["spool_corrupt"] == 0
    ids = _ids(stored(data))
    assert len(ids) == len(set(ids)) == spooled
    assert not list(spool.glob("*.seg"))  # acknowledged: the spool is empty again


def test_corrupt_spool_record_is_skipped_and_counted(tmp_path: Path) -> None:
    port = free_port()
    spool = tmp_path / "spool"
    sink = ForwarderSink(
        f"127.0.0.1:{port}", spool_dir=str(spool), max_memory_bytes=1, batch_max_pairs=1
    )
    pairs = _big_pairs(10, 100)
    for p in pairs:
        sink.put(p)
    sink.close(0.2)
    assert sink.counters()["spooled"] == 10
    seg = sorted(spool.glob("*.seg"))[0]
    raw = bytearray(seg.read_bytes())
    third = [i for i in range(len(raw)) if raw[i : i + 4] == MAGIC][2]
    raw[third + 12 + 20] ^= 0xFF  # flip a byte inside the third record's payload
    seg.write_bytes(bytes(raw))

    data = tmp_path / "data"
    with forwarder_process(port, data):
        sink2 = ForwarderSink(f"127.0.0.1:{port}", spool_dir=str(spool))
        assert sink2.flush(30) is True
        sink2.close(1)
    c = sink2.counters()
    assert c["spool_corrupt"] == 1
    assert c["recovered"] == 9
    ids = sorted(_ids(stored(data)))
    assert len(ids) == 9 and len(set(ids)) == 9
    missing = {p.id for p in pairs} - set(ids)
    assert len(missing) == 1  # exactly the corrupt record's RRPair, nothing else


@pytest.mark.root
@pytest.mark.netns
@pytest.mark.slow
def test_network_partition_link_down_then_up(tmp_path: Path) -> None:
    from tests.support.lab import Lab

    n = 150
    with nginx() as web:
        capture = tmp_path / "capture.jsonl"
        with capture.open("w") as fp:
            for pair in exchange_pairs(web.port, [Req("GET", f"/hello?p={i}") for i in range(n)]):
                jsonl.write(fp, pair)
    data = tmp_path / "data"
    port = 7070
    with Lab() as lab:
        fns, ans = lab.netns("fwd"), lab.netns("agent")
        link = lab.link(ans, fns)  # agent a_ip <-> forwarder b_ip
        lab.popen(
            fns,
            forwarder_argv(port, data, "--insecure", host=link.b_ip),
            cwd=str(Path(__file__).resolve().parents[2]),
        )
        deadline = time.monotonic() + 20
        while lab.run(fns, ["ss", "-ltn"], check=False).stdout.find(f":{port}") < 0:
            assert time.monotonic() < deadline, "forwarder did not start in its namespace"
            time.sleep(0.1)
        prod = start_producer(
            f"{link.b_ip}:{port}",
            "--input",
            str(capture),
            "--interval",
            "0.02",
            "--hold",
            prefix=["ip", "netns", "exec", ans.name],
        )
        lab.procs.append(prod)
        read_until(prod, "put 20")
        lab.run(ans, ["ip", "link", "set", "dev", link.a_dev, "down"])
        read_until(prod, "put 100")  # capture goes on during the partition (~1.6 s)
        time.sleep(8)  # longer than keepalive (2 s + 3 s) needs to give up on the stream
        lab.run(ans, ["ip", "link", "set", "dev", link.a_dev, "up"])
        assert read_until(prod, "FLUSHED", timeout=90) == "FLUSHED true"
        counters = finish_producer(prod)
    ids = _ids(stored(data))
    assert len(ids) == n and len(set(ids)) == n
    assert counters["acked"] == n
    assert counters["reconnects"] >= 1, json.dumps(counters)  # the partition broke the stream


@pytest.mark.root
def test_forwarder_disk_full_loses_nothing(tmp_path: Path) -> None:
    import subprocess

    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "nodetap-test", str(mnt)], check=True)
    try:
        port = free_port()
        data = mnt / "data"
        with forwarder_process(port, data):
            sink = ForwarderSink(f"127.0.0.1:{port}", batch_max_pairs=8, compression="none")
            pairs = _big_pairs(200, 16 * 1024)  # ~3.2 MiB into a 1 MiB file system
            for p in pairs:
                sink.put(p)
            assert sink.flush(3) is False  # the store is full: nothing acknowledged past it
            c = sink.counters()
            assert c["acked"] < 200 and c["reconnects"] >= 1
            assert c["dropped_queue_full"] == c["dropped_spool_full"] == 0
            subprocess.run(["mount", "-o", "remount,size=64m", str(mnt)], check=True)
            assert sink.flush(60) is True  # retried until stored
            sink.close(1)
        ids = _ids(stored(data))
        assert sorted(ids) == sorted(p.id for p in pairs)  # all of them, each once
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)
