"""Ingest into forwarders on NATS JetStream vs SQLite vs a bare grpcio ceiling, in one run.

    .venv/bin/python bench/forwarder_jetstream.py [--quick] [--rounds N]

For 1 KiB and 16 KiB RRPairs (plaintext gRPC): RRPairs/s and MB/s through the agent's
ForwarderSink into (a) the ceiling (a grpcio stream that stores nothing, from
bench/forwarder_ingest.py), (b) one forwarder on SQLite (fsync per batch), (c) one forwarder
on a real 3-node nats-server cluster with the stream at R1 and (d) R3, and (e) two forwarders
on R3, each fed by its own agent (half the RRPairs each, at the same time). Each JetStream run
gets a fresh cluster. Then capture-to-Subscribe latency p50/p99 at a steady load (SQLite vs
JetStream R3). Prints ratios against the ceiling measured in the same run; no thresholds.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import forwarder_ingest as fi  # noqa: E402
import grpc  # noqa: E402

from agent.sinks.forwarder import ForwarderSink  # noqa: E402
from forwarder import client  # noqa: E402
from nodetap import transport  # noqa: E402
from nodetap.v1 import forwarder_pb2 as fpb  # noqa: E402
from nodetap.v1 import rrpair_pb2 as pb  # noqa: E402
from tests.support.nats_cluster import nats_cluster, start_nats_forwarder  # noqa: E402


@contextlib.contextmanager
def servers(kind: str, tmp: Path) -> Iterator[list[str]]:
    """Addresses of the forwarder(s) for kind, running until the block ends."""
    if kind in ("ceiling", "sqlite"):
        port = fi.free_port()
        data = tmp / f"data-{port}"
        proc = fi.start("ceiling" if kind == "ceiling" else "forwarder-full", port, data, None)
        try:
            yield [f"127.0.0.1:{port}"]
        finally:
            fi.stop(proc)
            shutil.rmtree(data, ignore_errors=True)
        return
    replicas = "1" if kind == "js-R1" else "3"
    n = 2 if kind.startswith("2x") else 1
    with nats_cluster(3) as cluster:
        procs: list[subprocess.Popen[bytes]] = []
        try:
            addrs = []
            for _ in range(n):
                port = fi.free_port()
                procs.append(start_nats_forwarder(port, cluster.url, "--replicas", replicas))
                addrs.append(f"127.0.0.1:{port}")
            yield addrs
        finally:
            for p in procs:
                fi.stop(p)


def send(addr: str, pairs: list[pb.RRPair], out: list[bool]) -> None:
    sink = ForwarderSink(addr, compression="none")
    for p in pairs:
        sink.put(p)
    ok = sink.flush(600)
    sink.close(1)
    out.append(ok and sink.counters()["acked"] == len(pairs))


def ingest_rate(kind: str, pairs: list[pb.RRPair], tmp: Path) -> tuple[float, float]:
    with servers(kind, tmp) as addrs:
        size = sum(p.ByteSize() for p in pairs)
        share = len(pairs) // len(addrs)
        oks: list[bool] = []
        threads = [
            threading.Thread(target=send, args=(a, pairs[i * share : (i + 1) * share], oks))
            for i, a in enumerate(addrs)
        ]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        dt = time.perf_counter() - t0
        assert all(oks) and len(oks) == len(addrs), f"{kind}: not every RRPair acknowledged"
    return share * len(addrs) / dt, size / dt / 1e6


def latency(kind: str, rate: int, seconds: float, tmp: Path) -> list[float]:
    lat: list[float] = []
    with servers(kind, tmp) as (addr, *_):
        ch = transport.channel(addr)
        call = client.stub(ch).Subscribe(fpb.SubscribeRequest())
        call.initial_metadata()
        n = int(rate * seconds)

        def read() -> None:
            with contextlib.suppress(grpc.RpcError):
                for p in call:
                    lat.append((time.time_ns() - p.ts.ToNanoseconds()) / 1e6)
                    if len(lat) >= n:
                        return

        t = threading.Thread(target=read, daemon=True)
        t.start()
        sink = fi.send_paced(addr, n, rate)
        t.join(30)
        call.cancel()
        sink.close(1)
        ch.close()
    return lat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller runs")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median shown)")
    args = ap.parse_args()
    scale = 0.25 if args.quick else 1.0
    tmp = Path(tempfile.mkdtemp(prefix="nodetap-bench-js-"))
    kinds = ("ceiling", "sqlite", "js-R1", "js-R3", "2x js-R3")
    try:
        print(f"ingest, plaintext gRPC, ForwarderSink client; median of {args.rounds} rounds")
        print(f"{'pair size':>9} {'store':>10} {'RRPairs/s':>10} {'MB/s':>7} {'vs ceiling':>10}")
        for size, count in ((1024, int(8000 * scale)), (16384, int(1500 * scale))):
            pairs = fi.make_pairs(count, size)
            runs: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds}
            for _ in range(args.rounds):  # interleaved rounds, medians: a shared machine
                for k in kinds:
                    runs[k].append(ingest_rate(k, pairs, tmp))
            results = {k: sorted(v)[len(v) // 2] for k, v in runs.items()}
            ceil = results["ceiling"][0]
            for k, (pps, mbs) in results.items():
                print(f"{size // 1024:>7}Ki {k:>10} {pps:>10.0f} {mbs:>7.1f} {pps / ceil:>10.2f}")
        rate, secs = 500, 6 * scale
        print(f"\ncapture-to-Subscribe latency at {rate} RRPairs/s of 1 KiB for {secs:g} s (ms)")
        for kind in ("sqlite", "js-R3"):
            lat = sorted(latency(kind, rate, secs, tmp))
            if not lat:
                print(f"{kind:>10}: no samples")
                continue
            p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))]
            print(
                f"{kind:>10}: n={len(lat)} p50={statistics.median(lat):.1f} p99={p99:.1f}"
                f" max={lat[-1]:.1f}"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
