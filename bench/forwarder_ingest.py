"""Ingest into one forwarder vs a bare grpcio stream that stores nothing (the ceiling).

    .venv/bin/python bench/forwarder_ingest.py [--quick]

For 1 KiB and 16 KiB RRPairs, plaintext and TLS: RRPairs/s and MB/s through the agent's
ForwarderSink into (a) `nodetap forwarder` (SQLite store, fsync per batch by default, and with
--sync normal) and (b) a grpcio server on the same method that parses nothing and stores
nothing, acknowledging each batch at once. Both servers run as separate processes; the client
is the same. Then the capture-to-store latency at a steady load: RRPairs stamped at put(),
read back live from Subscribe (which publishes only after the batch is stored).
Prints ratios against the ceiling measured in the same run; no thresholds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent import futures
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import grpc  # noqa: E402

from agent.sinks.forwarder import ForwarderSink  # noqa: E402
from forwarder import client  # noqa: E402
from nodetap import transport  # noqa: E402
from nodetap.signals import stop_on_signals  # noqa: E402
from nodetap.transport import ClientTLS  # noqa: E402
from nodetap.v1 import forwarder_pb2 as fpb  # noqa: E402
from nodetap.v1 import rrpair_pb2 as pb  # noqa: E402
from tests.forwarder.pki import make_pki  # noqa: E402


# -- the ceiling server -------------------------------------------------------------------------
def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = n = 0
    while True:
        b = buf[i]
        n |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return n, i
        shift += 7


def _batch_key(data: bytes) -> tuple[bytes, int]:
    """agent_id and seq from the front of an IngestBatch (the sink writes them first)."""
    assert data[0] == 0x0A
    n, i = _varint(data, 1)
    aid = data[i : i + n]
    i += n
    assert data[i] == 0x10
    seq, _ = _varint(data, i + 1)
    return aid, seq


def ceiling_server(port: int, cert: str | None, key: str | None) -> None:
    def ingest(requests, context):  # type: ignore[no-untyped-def]
        for data in requests:
            aid, seq = _batch_key(data)
            yield fpb.IngestAck(agent_id=aid.decode(), seq=seq).SerializeToString()

    handler = grpc.method_handlers_generic_handler(
        "nodetap.v1.Forwarder",
        {"Ingest": grpc.stream_stream_rpc_method_handler(ingest)},  # raw bytes both ways
    )
    server = grpc.server(
        futures.ThreadPoolExecutor(8),
        handlers=[handler],
        options=[("grpc.max_receive_message_length", 16 << 20)],
    )
    if cert and key:
        creds = grpc.ssl_server_credentials([(Path(key).read_bytes(), Path(cert).read_bytes())])
        server.add_secure_port(f"127.0.0.1:{port}", creds)
    else:
        server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    stop = threading.Event()
    stop_on_signals(stop, (signal.SIGTERM,))  # server.stop in a handler could deadlock
    stop.wait()
    server.stop(0)


# -- helpers ------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"server on {port} did not start")


def make_certs(d: Path) -> tuple[str, str, str]:
    """A throwaway CA and a server certificate for 127.0.0.1: (ca, cert, key) paths."""
    make_pki(d, ("server",))
    return str(d / "ca.crt"), str(d / "server.crt"), str(d / "server.key")


def send_paced(addr: str, n: int, rate: float) -> ForwarderSink:
    """Put n 1 KiB RRPairs (ids lat-0.., ts = now) into a sink to addr at rate per second,
    flushed; the caller closes the sink."""
    sink = ForwarderSink(addr, linger=0.005)
    template = make_pairs(1, 1024)[0]
    t0 = time.perf_counter()
    for i in range(n):
        p = pb.RRPair()
        p.CopyFrom(template)
        p.id = f"lat-{i}"
        p.ts.FromNanoseconds(time.time_ns())
        sink.put(p)
        delay = t0 + (i + 1) / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
    sink.flush(60)
    return sink


def make_pairs(count: int, size: int) -> list[pb.RRPair]:
    body = os.urandom(size // 2).hex().encode()[:size]
    out = []
    for i in range(count):
        p = pb.RRPair(id=f"bench-{i}", l7protocol="http", direction=pb.INBOUND)
        p.ts.FromNanoseconds(time.time_ns())
        p.http.req.method, p.http.req.url = "POST", f"/bench/{i}"
        p.http.req.headers.add(name="Host", value="bench")
        p.http.req.body, p.http.req.body_size = body, size
        p.http.res.status_code = 200
        out.append(p)
    return out


def start(
    kind: str, port: int, data: Path, tls: tuple[str, str, str] | None
) -> subprocess.Popen[bytes]:
    if kind == "ceiling":
        argv = [sys.executable, __file__, "--ceiling-server", str(port)]
        if tls:
            argv += ["--cert", tls[1], "--key", tls[2]]
    else:
        argv = [
            sys.executable,
            "-m",
            "cli",
            "forwarder",
            "--listen",
            f"127.0.0.1:{port}",
            "--data-dir",
            str(data),
            "--sync",
            kind.split("-")[1],
        ]
        if tls:
            argv += ["--tls-cert", tls[1], "--tls-key", tls[2]]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def ingest_rate(
    kind: str, pairs: list[pb.RRPair], tls: tuple[str, str, str] | None, tmp: Path
) -> tuple[float, float]:
    port = free_port()
    data = tmp / f"data-{kind}-{port}"
    proc = start(kind, port, data, tls)
    try:
        sink = ForwarderSink(
            f"127.0.0.1:{port}", tls=ClientTLS(tls[0]) if tls else None, compression="none"
        )
        size = sum(p.ByteSize() for p in pairs)
        t0 = time.perf_counter()
        for p in pairs:
            sink.put(p)
        ok = sink.flush(300)
        dt = time.perf_counter() - t0
        sink.close(1)
        assert ok and sink.counters()["acked"] == len(pairs), sink.counters()
    finally:
        stop(proc)
        shutil.rmtree(data, ignore_errors=True)
    return len(pairs) / dt, size / dt / 1e6


def latency(kind: str, rate: int, seconds: float, tmp: Path) -> list[float]:
    port = free_port()
    data = tmp / f"lat-{kind}-{port}"
    proc = start(kind, port, data, None)
    lat: list[float] = []
    try:
        ch = transport.channel(f"127.0.0.1:{port}")
        call = client.stub(ch).Subscribe(fpb.SubscribeRequest())
        call.initial_metadata()
        n = int(rate * seconds)

        def read() -> None:
            try:
                for p in call:
                    lat.append((time.time_ns() - p.ts.ToNanoseconds()) / 1e6)
                    if len(lat) >= n:
                        return
            except grpc.RpcError:
                pass

        t = threading.Thread(target=read, daemon=True)
        t.start()
        sink = send_paced(f"127.0.0.1:{port}", n, rate)
        t.join(30)
        call.cancel()
        sink.close(1)
        ch.close()
    finally:
        stop(proc)
        shutil.rmtree(data, ignore_errors=True)
    return lat


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller runs")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median shown)")
    ap.add_argument("--ceiling-server", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--cert", help=argparse.SUPPRESS)
    ap.add_argument("--key", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.ceiling_server:
        ceiling_server(args.ceiling_server, args.cert, args.key)
        return
    scale = 0.25 if args.quick else 1.0
    tmp = Path(tempfile.mkdtemp(prefix="nodetap-bench-"))
    try:
        tls = make_certs(tmp)
        print(
            "ingest into one forwarder (ForwarderSink client, batches of 256 or 1 MiB;"
            f" median of {args.rounds} interleaved rounds)"
        )
        print(
            f"{'pair size':>9} {'transport':>9} {'server':>14} {'RRPairs/s':>10} {'MB/s':>7}"
            f" {'vs ceiling':>10}"
        )
        for size, count in ((1024, int(10000 * scale)), (16384, int(1500 * scale))):
            pairs = make_pairs(count, size)
            for transport in ("plaintext", "TLS"):
                t = tls if transport == "TLS" else None
                kinds = ("ceiling", "forwarder-full", "forwarder-normal")
                runs: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds}
                for _ in range(args.rounds):  # interleaved rounds, medians: a shared machine
                    for k in kinds:
                        runs[k].append(ingest_rate(k, pairs, t, tmp))
                results = {k: sorted(v)[len(v) // 2] for k, v in runs.items()}
                ceil = results["ceiling"][0]
                for k, (pps, mbs) in results.items():
                    print(
                        f"{size // 1024:>7}Ki {transport:>9} {k:>14} {pps:>10.0f} {mbs:>7.1f}"
                        f" {pps / ceil:>10.2f}"
                    )
        rate, secs = 1000, 5 * scale
        print(
            f"\ncapture-to-store latency at {rate} RRPairs/s of 1 KiB for {secs:g} s"
            " (put() to Subscribe delivery, ms)"
        )
        for kind in ("forwarder-full", "forwarder-normal"):
            lat = sorted(latency(kind, rate, secs, tmp))
            if not lat:
                print(f"{kind:>16}: no samples")
                continue

            def p(q: float, lat: list[float] = lat) -> float:
                return lat[min(len(lat) - 1, int(q * len(lat)))]

            print(
                f"{kind:>16}: n={len(lat)} p50={statistics.median(lat):.1f}"
                f" p90={p(0.9):.1f} p99={p(0.99):.1f} max={lat[-1]:.1f}"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
