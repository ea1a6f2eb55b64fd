"""What capturing TLS plaintext and HTTP/2 costs the traced application, against what a
TLS-terminating (or HTTP/2) sidecar proxy costs (issues 21 and 20).

nginx (one worker) on loopback, three ways, interleaved in the same run, per protocol:
  bare     the client talks to nginx directly
  nodetap  `nodetap capture` on nginx's worker (uprobes in its libssl for the plaintext of
           TLS, BPF syscall tracepoints; RRPairs to a file)
  proxy    an nginx in front that terminates TLS (or HTTP/2) and forwards to nginx's
           cleartext HTTP/1.1 port on keep-alive connections (the sidecar-style baseline)
Protocols: https (wrk, HTTP/1.1 over TLS), h2 (h2load over TLS, ALPN h2), h2c (h2load,
HTTP/2 prior knowledge). CPU is counted as bench/capture_overhead.py counts it (its
helpers): the client's, nginx's, and the agent's or the proxy's CPU time per request, while
under load. Completeness: whole RRPairs captured versus requests nginx logged. Ratios hold on
a shared, noisy machine; absolute numbers do not.

    .venv/bin/python bench/tls_overhead.py [--rounds 3] [--seconds 5] [--connections 32]
        [--streams 10] [--requests 10000] [--proto https,h2,h2c] [--mode NAME=FLAGS ...]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from capture_overhead import (  # noqa: E402
    Run,
    count_lines,
    count_whole,
    cpu_seconds,
    wait_cpu_seconds,
    wrk,
)

from tests.support.servers import Nginx, free_port, nginx  # noqa: E402
from tests.tls.tls_env import make_cert  # noqa: E402


@dataclass
class Ports:
    tls: int  # ssl http2: HTTP/1.1 or h2 by ALPN
    h2c: int  # http2 in cleartext (prior knowledge)


def listens(p: Ports, cert: Path, key: Path) -> str:
    return (
        f"listen 127.0.0.1:{p.tls} ssl http2; listen 127.0.0.1:{p.h2c} http2;\n"
        f"        ssl_certificate {cert}; ssl_certificate_key {key};\n"
        "        ssl_session_cache shared:bench:1m;\n"
    )


@contextlib.contextmanager
def backend_and_proxy(folder: Path) -> Iterator[tuple[Nginx, Ports, Nginx, Ports]]:
    c = make_cert(folder)
    bp, pp = Ports(free_port(), free_port()), Ports(free_port(), free_port())
    with nginx(workers=1, extra=listens(bp, c.cert, c.key)) as backend:
        proxied = (
            "location /proxied { proxy_pass http://backend/hello; proxy_http_version 1.1; "
            'proxy_set_header Connection ""; access_log off; }\n        '
        )
        with nginx(workers=1, extra=listens(pp, c.cert, c.key)) as proxy:
            conf = (proxy.root / "nginx.conf").read_text()
            conf = conf.replace(
                "server {",
                f"upstream backend {{ server 127.0.0.1:{backend.port}; keepalive 64; }}\n"
                "    server {",
                1,
            ).replace("location /hello", proxied + "location /hello", 1)
            (proxy.root / "nginx.conf").write_text(conf)
            subprocess.run(
                ["nginx", "-c", str(proxy.root / "nginx.conf"), "-p", str(proxy.root),
                 "-s", "reload"],
                check=True, capture_output=True,
            )  # fmt: skip
            time.sleep(0.5)
            yield backend, bp, proxy, pp


def h2load(url: str, requests: int, connections: int, streams: int, pids: list[int]) -> Run:
    """One h2load run of a fixed number of requests (with a duration instead, the streams in
    flight at its end are reset: nginx logs them, their answers never leave); latency: its
    mean time per request (it prints no percentiles)."""
    cmd = ["h2load", "-t1", f"-c{connections}", f"-m{streams}", f"-n{requests}", url]
    return run_h2load(cmd, pids, timeout=600)[0]


def run_h2load(cmd: list[str], pids: list[int], timeout: float) -> tuple[Run, int]:
    """Run an h2load command line: the Run (CPU per request of h2load and of `pids`) and
    the requests that succeeded."""
    cpu0 = sum(cpu_seconds(p) for p in pids)
    u0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=timeout).stdout
    u1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu1 = sum(cpu_seconds(p) for p in pids)
    m = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", out)
    rps = re.search(r"finished in [\d.]+\w*, ([\d.]+) req/s", out)
    lat = re.search(r"time for request:\s+\S+\s+\S+\s+([\d.]+)(us|ms|s)", out)
    assert m and rps and lat, out
    n = int(m.group(1))
    mean_ms = float(lat.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[lat.group(2)]
    client = (u1.ru_utime + u1.ru_stime) - (u0.ru_utime + u0.ru_stime)
    return Run(float(rps.group(1)), mean_ms, (client + cpu1 - cpu0) / max(n, 1) * 1e6), n


@dataclass
class Proto:
    name: str
    scheme: str

    def port(self, p: Ports) -> int:
        return p.h2c if self.name == "h2c" else p.tls

    def load(self, port: int, path: str, args: argparse.Namespace, pids: list[int]) -> Run:
        url = f"{self.scheme}://127.0.0.1:{port}{path}"
        if self.name == "https":
            return wrk(url, args.seconds, args.connections, pids)
        return h2load(url, args.requests, args.connections, args.streams, pids)


PROTOS = {"https": Proto("https", "https"), "h2": Proto("h2", "https"), "h2c": Proto("h2c", "http")}


@dataclass
class Captured:
    flags: list[str]
    runs: list[Run] = field(default_factory=list)
    agent_cpu: list[float] = field(default_factory=list)  # per captured request, under load
    served: int = 0
    captured: int = 0
    whole: int = 0
    sources: dict[str, int] = field(default_factory=dict)
    drops: dict[str, int] = field(default_factory=dict)


def hooked(addr: str, pid: int, cleartext: bool) -> bool:
    """The capture serves /status, and (for TLS) lists pid as hooked."""
    try:
        with urllib.request.urlopen(f"http://{addr}/status", timeout=2) as r:
            doc = json.loads(r.read())
    except (OSError, ValueError):
        return False
    return cleartext or any(t["pid"] == pid and t["state"] == "hooked" for t in doc.get("tls", []))


def capture_round(
    mode: Captured, proto: Proto, backend: Nginx, port: int, tmp: Path, args: argparse.Namespace
) -> Run:
    out, summary_path, log = tmp / "out.jsonl", tmp / "summary.json", tmp / "capture.log"
    worker = backend.worker_pids[0]
    status = f"127.0.0.1:{free_port()}"
    agent = subprocess.Popen(
        [sys.executable, "-m", "cli", "capture", "-p", str(worker), "--port", str(port),
         "-o", str(out), "--summary-json", str(summary_path), "--metrics-addr", status,
         *mode.flags],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=log.open("w"),
    )  # fmt: skip
    deadline = time.monotonic() + 300  # compiling the programs takes long on a loaded machine
    # capturing, and (TLS) the worker's libssl probed; /status is served before the programs
    # are loaded
    while "capturing" not in log.read_text() or not hooked(status, worker, proto.name == "h2c"):
        if agent.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the capture did not start: {log.read_text()}")
        time.sleep(0.1)
    before = count_lines(backend.root / "access.log")
    cpu0 = cpu_seconds(agent.pid)
    run = proto.load(port, "/hello", args, [worker, agent.pid])
    cpu1 = cpu_seconds(agent.pid)
    agent.send_signal(signal.SIGINT)
    wait_cpu_seconds(agent, timeout=600)
    served = count_lines(backend.root / "access.log") - before
    captured = count_lines(out)
    mode.served += served
    mode.captured += captured
    mode.whole += count_whole(out)
    mode.agent_cpu.append((cpu1 - cpu0) / max(captured, 1))
    with out.open() as f:
        for line in f:
            src = json.loads(line).get("meta", {}).get("source", "?")
            mode.sources[src] = mode.sources.get(src, 0) + 1
    for k, v in json.loads(summary_path.read_text()).items():
        if k.startswith("drop_") and v:
            mode.drops[k] = mode.drops.get(k, 0) + v
    out.unlink()
    return run


def report(
    proto: Proto,
    args: argparse.Namespace,
    bare: list[Run],
    proxy: list[Run],
    modes: dict[str, Captured],
) -> None:
    def med(runs: list[Run]) -> Run:
        return Run(*(statistics.median(getattr(r, f) for r in runs) for f in Run.__annotations__))

    b, p = med(bare), med(proxy)
    client = "wrk" if proto.name == "https" else f"h2load -m{args.streams} -n{args.requests}"
    lat = "p99 ms" if proto.name == "https" else "mean ms"
    print(
        f"\n{proto.name}: nginx + {client} -c{args.connections}, "
        f"{args.rounds} rounds"
        + (f" of {args.seconds:g}s" if proto.name == "https" else "")
        + ", medians"
    )
    print(f"{'mode':<10} {'req/s':>10} {lat:>8} {'req/s vs bare':>14} {'CPU us/req':>11}")
    rows = {"bare": b, **{n: med(m.runs) for n, m in modes.items()}, "proxy": p}
    for name, r in rows.items():
        print(
            f"{name:<10} {r.rps:>10.0f} {r.p99_ms:>8.2f} {r.rps / b.rps:>14.2f} {r.cpu_us:>11.2f}"
        )
    cpu_proxy = p.cpu_us - b.cpu_us
    for name, m in modes.items():
        r = rows[name]
        cpu_cost = r.cpu_us - b.cpu_us
        ratio = cpu_cost / cpu_proxy if cpu_proxy > 0 else float("nan")
        per_round = [
            (c.cpu_us - bb.cpu_us) / (pp.cpu_us - bb.cpu_us)
            for c, bb, pp in zip(m.runs, bare, proxy, strict=True)
            if pp.cpu_us > bb.cpu_us
        ]
        print(f"{name} {' '.join(m.flags)}:".rstrip())
        print(
            f"  CPU cost per request {cpu_cost:.2f} us, proxy {cpu_proxy:.2f} us; "
            f"capture/proxy CPU cost ratio {ratio:.2f} (target <= 0.35; per round: "
            + " ".join(f"{x:.2f}" for x in per_round)
            + ")"
        )
        print(
            f"  throughput cost {1 - r.rps / b.rps:.1%}, proxy {1 - p.rps / b.rps:.1%}; "
            f"agent CPU per captured request {statistics.median(m.agent_cpu) * 1e6:.1f} us"
        )
        print(
            f"  completeness: {m.whole} whole RRPairs for {m.served} requests served "
            f"({100 * m.whole / max(m.served, 1):.2f}%), {m.captured - m.whole} flagged; "
            f"sources: {m.sources}; drops: "
            + (", ".join(f"{k[5:]}={v}" for k, v in sorted(m.drops.items())) or "none")
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--streams", type=int, default=10, help="h2load's streams per connection")
    ap.add_argument("--requests", type=int, default=10000, help="h2load's requests per run")
    ap.add_argument("--proto", default="https,h2,h2c")
    ap.add_argument("--mode", action="append", default=[], metavar="NAME=FLAGS")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench: run as root (BPF)", file=sys.stderr)
        return 2
    protos = [PROTOS[n] for n in args.proto.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="nodetap-bench-tls-"))
    tmp.chmod(0o755)
    try:
        with backend_and_proxy(tmp) as (backend, bp, proxy, pp):
            for proto in protos:
                modes = {"nodetap": Captured([])}
                for spec in args.mode:
                    name, _, flags = spec.partition("=")
                    modes[name] = Captured(flags.split())
                bare: list[Run] = []
                proxied: list[Run] = []
                workers = backend.worker_pids
                for _ in range(args.rounds):
                    bare.append(proto.load(proto.port(bp), "/hello", args, workers))
                    for m in modes.values():
                        m.runs.append(capture_round(m, proto, backend, proto.port(bp), tmp, args))
                    both = workers + proxy.worker_pids
                    proxied.append(proto.load(proto.port(pp), "/proxied", args, both))
                report(proto, args, bare, proxied, modes)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
