"""What capturing gRPC costs the traced service, against what a gRPC-proxying sidecar costs
(issue 20).

grpc-go serving test.Echo (tests/support/peers/go_grpc) on loopback, h2c, three ways,
interleaved in the same run:
  bare     h2load sends unary calls (POST /test.Echo/Unary, one length-prefixed message,
           content-type application/grpc, te: trailers) straight to grpc-go
  nodetap  `nodetap capture` on grpc-go's process (BPF syscall tracepoints; the core decodes
           HTTP/2 and gRPC; RRPairs to a file)
  proxy    nginx (one worker, Debian's, http2) in front with `grpc_pass` to grpc-go, the
           sidecar-style baseline
CPU is counted as bench/capture_overhead.py counts it: the client's, grpc-go's, and the
agent's or the proxy's CPU time per call, under load. Completeness: whole gRPC RRPairs
(request and response, no loss flag, grpc-status 0) captured versus calls h2load saw
succeed. Ratios hold on a shared, noisy machine; absolute numbers do not. Bounded: every
load run is a fixed number of calls (--requests), and no round starts that would end
past --max-seconds (default 60; the first always runs).

    .venv/bin/python bench/grpc_overhead.py [--rounds 3] [--requests 4000]
        [--connections 8] [--streams 10] [--max-seconds 60]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from capture_overhead import Run, cpu_seconds, wait_cpu_seconds  # noqa: E402
from tls_overhead import run_h2load  # noqa: E402

from tests.support.peers import go_grpc  # noqa: E402
from tests.support.peers.process import serving  # noqa: E402
from tests.support.servers import free_port, nginx  # noqa: E402

PATH = "/test.Echo/Unary"
MESSAGE = b"nodetap grpc bench " * 4  # Unary answers it reversed


def grpc_h2load(
    port: int, body: Path, requests: int, connections: int, streams: int, pids: list[int]
) -> tuple[Run, int]:
    """h2load's unary calls; the Run and the calls that succeeded (HTTP 200; grpc-go answers
    200 to every call, the capture's grpc-status check is in completeness)."""
    cmd = ["h2load", "-t1", f"-c{connections}", f"-m{streams}", f"-n{requests}", "-d", str(body),
           "-H", "content-type: application/grpc", "-H", "te: trailers",
           f"http://127.0.0.1:{port}{PATH}"]  # fmt: skip
    return run_h2load(cmd, pids, timeout=300)


@dataclass
class Captured:
    runs: list[Run] = field(default_factory=list)
    agent_cpu: list[float] = field(default_factory=list)
    calls: int = 0
    captured: int = 0
    whole: int = 0
    drops: dict[str, int] = field(default_factory=dict)


def count(out: Path) -> tuple[int, int]:
    """(gRPC RRPairs, whole ones: request and response, no flag, grpc-status 0)."""
    n = whole = 0
    with out.open(encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            if d.get("l7protocol") != "grpc":
                continue
            n += 1
            h = d.get("http", {})
            ok = "req" in h and "res" in h and not d.get("flags")
            if ok and not d.get("grpc", {}).get("status"):
                whole += 1
    return n, whole


def capture_round(
    mode: Captured, server: int, port: int, body: Path, tmp: Path, args: argparse.Namespace
) -> None:
    out, summary_path, log = tmp / "out.jsonl", tmp / "summary.json", tmp / "capture.log"
    agent = subprocess.Popen(
        [sys.executable, "-m", "cli", "capture", "-p", str(server), "--port", str(port),
         "-o", str(out), "--summary-json", str(summary_path)],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=log.open("w"),
    )  # fmt: skip
    deadline = time.monotonic() + 300  # compiling the programs takes long on a loaded machine
    while "capturing" not in log.read_text():
        if agent.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the capture did not start: {log.read_text()}")
        time.sleep(0.1)
    cpu0 = cpu_seconds(agent.pid)
    run, calls = grpc_h2load(
        port, body, args.requests, args.connections, args.streams, [server, agent.pid]
    )
    cpu1 = cpu_seconds(agent.pid)
    agent.send_signal(signal.SIGINT)
    wait_cpu_seconds(agent, timeout=600)
    n, whole = count(out)
    mode.runs.append(run)
    mode.calls += calls
    mode.captured += n
    mode.whole += whole
    mode.agent_cpu.append((cpu1 - cpu0) / max(n, 1))
    for k, v in json.loads(summary_path.read_text()).items():
        if k.startswith("drop_") and v:
            mode.drops[k] = mode.drops.get(k, 0) + v
    out.unlink()


@contextlib.contextmanager
def grpc_proxy(backend_port: int) -> Iterator[tuple[int, list[int]]]:
    """nginx (one worker) on an h2c port, grpc_pass to the backend; (port, worker pids)."""
    port = free_port()
    extra = f"listen 127.0.0.1:{port} http2;\n"
    passing = "location /test.Echo/ { grpc_pass grpc://grpc_backend; access_log off; }\n        "
    with nginx(workers=1, extra=extra) as ngx:  # the upstream added once it runs (reload)
        conf = (ngx.root / "nginx.conf").read_text()
        conf = conf.replace(
            "server {",
            f"upstream grpc_backend {{ server 127.0.0.1:{backend_port}; keepalive 64; }}\n"
            "    server {",
            1,
        ).replace("location /hello", passing + "location /hello", 1)
        (ngx.root / "nginx.conf").write_text(conf)
        subprocess.run(
            ["nginx", "-c", str(ngx.root / "nginx.conf"), "-p", str(ngx.root), "-s", "reload"],
            check=True, capture_output=True,
        )  # fmt: skip
        time.sleep(0.5)
        yield port, ngx.worker_pids


def report(args: argparse.Namespace, bare: list[Run], proxy: list[Run], m: Captured) -> None:
    def med(runs: list[Run]) -> Run:
        return Run(*(statistics.median(getattr(r, f) for r in runs) for f in Run.__annotations__))

    b, p, c = med(bare), med(proxy), med(m.runs)
    print(
        f"\ngrpc unary (grpc-go server, h2c): h2load -c{args.connections} -m{args.streams} "
        f"-n{args.requests}, {len(bare)} rounds, medians"
    )
    print(f"{'mode':<10} {'calls/s':>10} {'mean ms':>8} {'vs bare':>8} {'CPU us/call':>12}")
    for name, r in (("bare", b), ("nodetap", c), ("proxy", p)):
        print(f"{name:<10} {r.rps:>10.0f} {r.p99_ms:>8.2f} {r.rps / b.rps:>8.2f} {r.cpu_us:>12.2f}")
    cpu_cost, cpu_proxy = c.cpu_us - b.cpu_us, p.cpu_us - b.cpu_us
    ratio = cpu_cost / cpu_proxy if cpu_proxy > 0 else float("nan")
    per_round = [
        (x.cpu_us - bb.cpu_us) / (pp.cpu_us - bb.cpu_us)
        for x, bb, pp in zip(m.runs, bare, proxy, strict=False)
        if pp.cpu_us > bb.cpu_us
    ]
    print(
        f"  CPU cost per call {cpu_cost:.2f} us, proxy {cpu_proxy:.2f} us; capture/proxy CPU "
        f"cost ratio {ratio:.2f} (target <= 0.35; per round: "
        + " ".join(f"{x:.2f}" for x in per_round)
        + ")"
    )
    print(
        f"  throughput cost {1 - c.rps / b.rps:.1%}, proxy {1 - p.rps / b.rps:.1%}; "
        f"agent CPU per captured call {statistics.median(m.agent_cpu) * 1e6:.1f} us"
    )
    print(
        f"  completeness: {m.whole} whole gRPC RRPairs for {m.calls} calls "
        f"({100 * m.whole / max(m.calls, 1):.2f}%), {m.captured - m.whole} flagged or failed; "
        "drops: " + (", ".join(f"{k[5:]}={v}" for k, v in sorted(m.drops.items())) or "none")
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=4000, help="unary calls per load run")
    ap.add_argument("--connections", type=int, default=8)
    ap.add_argument("--streams", type=int, default=10, help="calls in flight per connection")
    ap.add_argument(
        "--max-seconds", type=float, default=60.0, help="no round that would end after this"
    )
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench: run as root (BPF)", file=sys.stderr)
        return 2
    if shutil.which("h2load") is None:
        print("bench: h2load missing (Debian's nghttp2-client)", file=sys.stderr)
        return 2
    tmp = Path(tempfile.mkdtemp(prefix="nodetap-bench-grpc-"))
    tmp.chmod(0o755)
    body = tmp / "call.bin"
    body.write_bytes(b"\x00" + len(MESSAGE).to_bytes(4, "big") + MESSAGE)
    t0 = time.monotonic()
    try:
        gport = free_port()
        with (
            serving([str(go_grpc.build()), "server-grpc", str(gport)], gport) as server,
            grpc_proxy(gport) as (pport, proxy_pids),
        ):
            bare: list[Run] = []
            proxied: list[Run] = []
            cap = Captured()
            last = 0.0  # the last round's seconds: no round that would end past --max-seconds
            for _ in range(args.rounds):
                r0 = time.monotonic()
                if bare and r0 - t0 + last > args.max_seconds:
                    break
                pids = [server.pid]
                r, _ = grpc_h2load(gport, body, args.requests, args.connections, args.streams, pids)
                bare.append(r)
                capture_round(cap, server.pid, gport, body, tmp, args)
                r, _ = grpc_h2load(
                    pport, body, args.requests, args.connections, args.streams,
                    pids + proxy_pids,
                )  # fmt: skip
                proxied.append(r)
                last = time.monotonic() - r0
            report(args, bare, proxied, cap)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"  (run took {time.monotonic() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
