"""Benchmark: pcap import throughput, nodetap versus tshark (and a bare dpkt loop).

Makes its own capture: nginx on loopback, wrk for a bounded time, tcpdump writing the pcap
(at least 50k HTTP exchanges). Then, on the same file, times:
  - nodetap import FILE -o /dev/null          (reassembly, HTTP parsing, RRPairs, JSONL)
  - tshark -r FILE -Y http -T fields ...      (Wireshark's dissectors, the peer tool)
  - a bare dpkt loop that only decodes packets (the ceiling for dpkt-based decoding)
and prints MB/s and exchanges/s for each (per CPU second of the timed process; --wall:
per wall-clock second), and the ratios. Best of --runs runs each,
interleaved. No thresholds: run it, read the ratios.

    .venv/bin/python bench/pcap_import.py [--min-exchanges 50000] [--runs 2] [--keep FILE]
                                          [--short-flows N]

--short-flows N adds a second file: N connections with one exchange each (synthesised
with agent.packet.pcap_export), where per-connection costs dominate.
--h2 N adds an h2c file: h2load (N requests, 4 connections, 10 streams each) against nghttpd,
timed against tshark's http2 dissector (-d tcp.port==P,http2, HEADERS frames' fields).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.servers import nginx  # noqa: E402


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# what the timings count: the CPU seconds of the timed process (default: robust on a busy
# machine, where wall time mostly measures the neighbours), or wall-clock seconds
_clock = _children_cpu


def capture(path: Path, min_exchanges: int) -> tuple[int, int]:
    """Capture wrk traffic to nginx until the file holds min_exchanges; (port, exchanges)."""
    with nginx(workers=1) as ngx:
        for seconds in (2, 4, 8):
            tcpdump = subprocess.Popen(
                ["tcpdump", "-i", "lo", "-n", "-B", "262144", "-w", str(path),
                 f"tcp port {ngx.port}"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )  # fmt: skip
            assert tcpdump.stderr is not None
            tcpdump.stderr.readline()  # "listening on lo ..."
            try:
                subprocess.run(
                    ["wrk", "-c", "8", "-t", "2", "-d", f"{seconds}s", f"{ngx.url}/hello"],
                    check=True, capture_output=True, timeout=seconds + 30,
                )  # fmt: skip
            finally:
                time.sleep(0.5)
                tcpdump.send_signal(signal.SIGINT)
                tcpdump.wait(timeout=30)
            n = count_exchanges(path)
            if n >= min_exchanges:
                return ngx.port, n
    raise SystemExit(f"could not capture {min_exchanges} exchanges (got {n})")


def count_exchanges(path: Path) -> int:
    out = subprocess.run(
        [sys.executable, "-m", "cli", "import", str(path), "-q"],
        capture_output=True, cwd=REPO, check=True,
    ).stdout  # fmt: skip
    return out.count(b"\n")


def time_nodetap(path: Path) -> float:
    t = _clock()
    subprocess.run(
        [sys.executable, "-m", "cli", "import", str(path), "-o", "/dev/null", "-q"],
        cwd=REPO, check=True,
    )  # fmt: skip
    return _clock() - t


def time_tshark(path: Path, port: int, h2: bool = False) -> tuple[float, int]:
    fields = (
        ["-d", f"tcp.port=={port},http2", "-Y", "http2.type == 1", "-T", "fields",
         "-e", "http2.streamid", "-e", "http2.headers.method", "-e", "http2.headers.path",
         "-e", "http2.headers.status"]
        if h2
        else ["-d", f"tcp.port=={port},http", "-Y", "http", "-T", "fields",
              "-e", "http.request.method", "-e", "http.request.uri", "-e", "http.response.code"]
    )  # fmt: skip
    t = _clock()
    out = subprocess.run(
        ["tshark", "-r", str(path), "-n", *fields], capture_output=True, check=True
    ).stdout
    return _clock() - t, out.count(b"\n")


def capture_h2(path: Path, requests: int) -> tuple[int, int]:
    """h2load against nghttpd (h2c) recorded by tcpdump on lo; (port, exchanges)."""
    from tests.support.nghttpd import nghttpd

    with tempfile.TemporaryDirectory() as d, nghttpd(Path(d)) as port:
        tcpdump = subprocess.Popen(
            ["tcpdump", "-i", "lo", "-n", "-B", "262144", "-w", str(path), f"tcp port {port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        assert tcpdump.stderr is not None
        tcpdump.stderr.readline()  # "listening on lo ..."
        try:
            subprocess.run(
                ["h2load", "-n", str(requests), "-c", "4", "-m", "10",
                 f"http://127.0.0.1:{port}/index.html"],
                check=True, capture_output=True, timeout=300,
            )  # fmt: skip
        finally:
            time.sleep(0.5)
            tcpdump.send_signal(signal.SIGINT)
            tcpdump.wait(timeout=30)
    return port, count_exchanges(path)


DPKT_LOOP = """
import sys, dpkt
n = 0
with open(sys.argv[1], "rb") as f:
    for ts, buf in dpkt.pcap.Reader(f):
        eth = dpkt.ethernet.Ethernet(buf)
        n += 1
print(n)
"""


def time_dpkt(path: Path) -> tuple[float, int]:
    t = _clock()
    out = subprocess.run(
        [sys.executable, "-c", DPKT_LOOP, str(path)], capture_output=True, check=True
    ).stdout
    return _clock() - t, int(out)


def synth_short_flows(path: Path, n: int) -> None:
    from agent.packet.pcap_export import write_pcap
    from nodetap.v1 import rrpair_pb2 as pb

    def pairs() -> Iterator[pb.RRPair]:
        for i in range(n):
            p = pb.RRPair(id=f"s{i}", ttfb_us=50, duration_us=60)
            p.ts.FromNanoseconds(1_700_000_000_000_000_000 + i * 100_000)
            p.client.ip, p.client.port = f"10.{i // 60000}.0.1", 1024 + i % 60000
            p.server.ip, p.server.port = "10.255.0.1", 8080
            r, s = p.http.req, p.http.res
            r.method, r.url, r.version = "GET", f"/item/{i}", "HTTP/1.1"
            r.headers.add(name="Host", value="svc")
            s.status_code, s.status_message, s.version = 200, "OK", "HTTP/1.1"
            s.headers.add(name="Content-Length", value="12")
            s.body, s.body_size = b"hello world\n", 12
            yield p

    with open(path, "wb") as fp:
        write_pcap(pairs(), fp)


def report(title: str, pcap: Path, port: int, exchanges: int, runs: int, h2: bool = False) -> None:
    mb = pcap.stat().st_size / 1e6
    best: dict[str, float] = {}
    packets = tshark_lines = 0
    for _ in range(runs):
        best["nodetap"] = min(best.get("nodetap", 1e9), time_nodetap(pcap))
        t, tshark_lines = time_tshark(pcap, port, h2)
        best["tshark"] = min(best.get("tshark", 1e9), t)
        t, packets = time_dpkt(pcap)
        best["dpkt"] = min(best.get("dpkt", 1e9), t)
    print(
        f"{title}: {mb:.1f} MB, {packets} packets, {exchanges} exchanges "
        f"(tshark shows {tshark_lines} {'HTTP/2 HEADERS frames' if h2 else 'HTTP messages'})"
    )
    for name, label in (
        ("nodetap", "nodetap import"),
        ("tshark", "tshark -Y http2 -T fields" if h2 else "tshark -Y http -T fields"),
        ("dpkt", "bare dpkt decode loop"),
    ):
        t = best[name]
        print(f"{label:28s} {t:7.2f} s  {mb / t:7.1f} MB/s  {exchanges / t:9.0f} exchanges/s")
    print(f"ratio nodetap/tshark throughput: {best['tshark'] / best['nodetap']:.2f}")
    print(f"ratio nodetap/bare dpkt loop throughput: {best['dpkt'] / best['nodetap']:.2f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--min-exchanges", type=int, default=50_000)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--keep", metavar="FILE", help="keep the capture here")
    ap.add_argument("--short-flows", metavar="N", type=int, default=0)
    ap.add_argument("--wall", action="store_true", help="wall-clock times instead of CPU")
    ap.add_argument("--h2", metavar="N", type=int, default=0, help="an h2c file of N requests")
    args = ap.parse_args()
    if args.wall:
        global _clock
        _clock = time.perf_counter
    print(f"times: {'wall-clock' if args.wall else 'CPU (user + system) of the timed process'}")
    for tool in ("tcpdump", "tshark", "wrk", "nginx"):
        if not shutil.which(tool) and not Path("/usr/sbin", tool).exists():
            raise SystemExit(f"{tool} not found; run scripts/setup.sh")
    tmp = Path(tempfile.mkdtemp(prefix="nodetap-bench-"))
    try:
        pcap = tmp / "wrk.pcap"
        port, exchanges = capture(pcap, args.min_exchanges)
        report("wrk capture", pcap, port, exchanges, args.runs)
        if args.short_flows:
            short = tmp / "short.pcap"
            synth_short_flows(short, args.short_flows)
            report("short connections", short, 8080, count_exchanges(short), args.runs)
        if args.h2:
            h2 = tmp / "h2load.pcap"
            h2_port, h2_exchanges = capture_h2(h2, args.h2)
            report("h2load capture (h2c)", h2, h2_port, h2_exchanges, args.runs, h2=True)
        if args.keep:
            shutil.copy(pcap, args.keep)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
