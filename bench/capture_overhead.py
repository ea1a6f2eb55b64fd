"""What capture costs the traced application, against what a sidecar proxy costs.

nginx (one worker) served by wrk on loopback, three ways, interleaved in the same run:
  bare     no capture
  nodetap  `nodetap capture` on nginx's worker (BPF syscall tracepoints, RRPairs to a file),
           decoded at once by the Rust core (the default)
  python   the same with the Python record loop (NODETAP_DECODER=python): the decoder the
           core replaced, measured in the same rounds
  proxy    an nginx reverse proxy in front of nginx (the sidecar-style baseline)
Prints req/s and p99 latency for each, the ratios to bare, the CPU time per request of
every process involved (wrk, nginx, the agent or the proxy: less sensitive to the other
tenants of a shared machine than req/s), the agent's CPU per captured request, and
completeness: RRPairs captured versus requests nginx served (its access log),
with the kernel's drops by cause. Ratios hold on a shared, noisy machine; absolute numbers
do not.

    .venv/bin/python bench/capture_overhead.py [--rounds 3] [--seconds 5] [--connections 32]
        [--mode NAME=FLAGS ...]   # more capture modes, e.g. 'probe=--register-reads probe'
        [--tree NAME=PATH ...]    # the capture of another checkout (e.g. an older commit),
                                  # as mode NAME in the same rounds
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
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.servers import Nginx, nginx  # noqa: E402


@dataclass
class Run:
    """One wrk run: requests/s, p99 latency, and the CPU time per request of every
    process involved (wrk, the nginx workers, the agent or the proxy)."""

    rps: float
    p99_ms: float
    cpu_us: float


def wrk(url: str, seconds: float, connections: int, pids: list[int]) -> Run:
    """One wrk run; `pids`: the other processes whose CPU time the requests cost."""
    cpu0 = sum(cpu_seconds(p) for p in pids)
    wrk0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", url],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    wrk1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu1 = sum(cpu_seconds(p) for p in pids)
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    n = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    assert m is not None, out
    p99 = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
    wrk_cpu = (wrk1.ru_utime + wrk1.ru_stime) - (wrk0.ru_utime + wrk0.ru_stime)
    return Run(rps, p99, (wrk_cpu + cpu1 - cpu0) / max(n, 1) * 1e6)


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and its live children."""
    total = 0.0
    with contextlib.suppress(OSError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                total += cpu_seconds(int(child))
    return total


def wait_cpu_seconds(proc: subprocess.Popen[bytes], timeout: float) -> float:
    """Wait for the process to end; its whole CPU time, children it waited for included."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return usage.ru_utime + usage.ru_stime
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"the capture did not end within {timeout:g}s")


@contextlib.contextmanager
def proxy_to(backend: Nginx) -> Iterator[Nginx]:
    extra = ""
    with nginx(extra=extra) as p:
        conf = (p.root / "nginx.conf").read_text()
        conf = conf.replace(
            "server {",
            f"upstream backend {{ server 127.0.0.1:{backend.port}; keepalive 64; }}\n    server {{",
            1,
        ).replace(
            "location /hello",
            "location /proxied { proxy_pass http://backend/hello; proxy_http_version 1.1; "
            'proxy_set_header Connection ""; access_log off; }\n        location /hello',
        )
        (p.root / "nginx.conf").write_text(conf)
        subprocess.run(
            ["nginx", "-c", str(p.root / "nginx.conf"), "-p", str(p.root), "-s", "reload"],
            check=True,
            capture_output=True,
        )
        time.sleep(0.5)
        yield p


def count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for _ in f)


def count_whole(path: Path) -> int:
    """RRPairs with a request and a response and no loss flag."""
    whole = 0
    with path.open(encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            if "flags" not in d and "req" in d.get("http", {}) and "res" in d["http"]:
                whole += 1
    return whole


@dataclass
class CaptureRun:
    """One capture mode's measurements across rounds."""

    flags: list[str]
    tree: Path = REPO  # the checkout whose `python -m cli capture` runs
    env: dict[str, str] = field(default_factory=dict)  # more environment variables
    runs: list[Run] = field(default_factory=list)
    cpu_loaded: list[float] = field(default_factory=list)  # per request, while under load
    cpu_all: list[float] = field(default_factory=list)  # per request, until the capture ended
    catch_up: list[float] = field(default_factory=list)  # s from the load's end to the exit
    served: int = 0
    captured: int = 0
    whole: int = 0
    drops: dict[str, int] = field(default_factory=dict)


def capture_round(
    mode: CaptureRun, backend: Nginx, tmp: Path, name: str, args: argparse.Namespace
) -> Run:
    out = tmp / f"{name}.jsonl"
    summary_path = tmp / f"{name}.summary.json"
    log = tmp / f"{name}.log"
    agent = subprocess.Popen(
        [sys.executable, "-m", "cli", "capture", "-p", str(backend.worker_pids[0])]
        + ["--port", str(backend.port), "-o", str(out), "--summary-json", str(summary_path)]
        + mode.flags,
        cwd=mode.tree,
        env={**os.environ, **mode.env},
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )
    deadline = time.monotonic() + 60
    while "capturing" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    before_lines = count_lines(backend.root / "access.log")
    cpu0 = cpu_seconds(agent.pid)
    run = wrk(
        f"{backend.url}/hello", args.seconds, args.connections, [*backend.worker_pids, agent.pid]
    )
    cpu1 = cpu_seconds(agent.pid)
    t_end = time.monotonic()
    agent.send_signal(signal.SIGINT)  # the capture decodes what the ring holds, then ends
    cpu_all = wait_cpu_seconds(agent, timeout=600)
    mode.catch_up.append(time.monotonic() - t_end)
    n_served = count_lines(backend.root / "access.log") - before_lines
    n_captured = count_lines(out)
    mode.served += n_served
    mode.captured += n_captured
    mode.whole += count_whole(out)
    mode.cpu_loaded.append((cpu1 - cpu0) / max(n_captured, 1))
    mode.cpu_all.append(cpu_all / max(n_captured, 1))
    summary = json.loads(summary_path.read_text())
    for k, v in summary.items():
        if k.startswith("drop_") and v:
            mode.drops[k] = mode.drops.get(k, 0) + v
    out.unlink()
    return run


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument(
        "--mode",
        action="append",
        default=[],
        metavar="NAME=FLAGS",
        help="one more capture mode, measured like the others: a name and the capture "
        "flags it adds (e.g. 'probe=--register-reads probe')",
    )
    ap.add_argument(
        "--tree",
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="also measure the capture of another checkout (run with this interpreter "
        "from PATH), as mode NAME",
    )
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("bench: run as root (BPF)", file=sys.stderr)
        return 2
    modes = {
        "nodetap": CaptureRun([]),
        "python": CaptureRun([], env={"NODETAP_DECODER": "python"}),
    }
    for spec in args.mode:
        name, sep, flags = spec.partition("=")
        if not sep or not name or name in modes or name in ("bare", "proxy"):
            ap.error(f"--mode {spec!r}: expected a new NAME=FLAGS")
        modes[name] = CaptureRun(flags.split())
    for spec in args.tree:
        name, sep, path = spec.partition("=")
        tree = Path(path).resolve()
        if not sep or not name or name in modes or not (tree / "cli").is_dir():
            ap.error(f"--tree {spec!r}: expected a new NAME=PATH of a nodetap checkout")
        modes[name] = CaptureRun([], tree)
    results: dict[str, list[Run]] = {"bare": []}
    results.update({name: m.runs for name, m in modes.items()})
    results["proxy"] = []
    tmp = Path(tempfile.mkdtemp(prefix="nodetap-bench-"))
    try:
        with nginx(workers=1) as backend, proxy_to(backend) as proxy:
            for r in range(args.rounds):
                results["bare"].append(
                    wrk(f"{backend.url}/hello", args.seconds, args.connections, backend.worker_pids)
                )
                for name, mode in modes.items():
                    mode.runs.append(capture_round(mode, backend, tmp, f"{name}-{r}", args))
                workers = backend.worker_pids + proxy.worker_pids
                results["proxy"].append(
                    wrk(f"{proxy.url}/proxied", args.seconds, args.connections, workers)
                )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med: dict[str, Run] = {
        name: Run(
            *(statistics.median(getattr(r, f) for r in runs) for f in ("rps", "p99_ms", "cpu_us"))
        )
        for name, runs in results.items()
    }
    bare, proxy_run = med["bare"], med["proxy"]
    print(f"nginx + wrk -c{args.connections}, {args.rounds} rounds of {args.seconds:g}s, medians")
    print(
        f"{'mode':<11} {'req/s':>10} {'p99 ms':>8} {'req/s vs bare':>14} {'p99 vs bare':>12}"
        f" {'CPU us/req':>11}"
    )
    for name, m in med.items():
        print(
            f"{name:<11} {m.rps:>10.0f} {m.p99_ms:>8.2f} {m.rps / bare.rps:>14.2f} "
            f"{m.p99_ms / bare.p99_ms:>12.2f} {m.cpu_us:>11.2f}"
        )
    print(
        "(CPU us/req: CPU time of wrk, the nginx workers and the agent or the proxy, per "
        "request served, while under load)"
    )
    cost_proxy = 1 - proxy_run.rps / bare.rps
    cpu_proxy = proxy_run.cpu_us - bare.cpu_us
    for name, mode in modes.items():
        m = med[name]
        cost = 1 - m.rps / bare.rps
        ratio = cost / cost_proxy if cost_proxy > 0 else float("nan")
        cpu_cost = m.cpu_us - bare.cpu_us
        cpu_ratio = cpu_cost / cpu_proxy if cpu_proxy > 0 else float("nan")
        label = {
            "nodetap": "nodetap (the Rust core, the default)",
            "python": "nodetap NODETAP_DECODER=python",
        }.get(name, f"nodetap {' '.join(mode.flags)} ({name}, {mode.tree.name})")
        # each round's ratio against that round's bare and proxy runs (the machine drifts)
        per_round = [
            (1 - r.rps / b.rps) / (1 - p.rps / b.rps)
            for r, b, p in zip(mode.runs, results["bare"], results["proxy"], strict=True)
            if p.rps < b.rps
        ]
        print(f"{label}:")
        print(
            f"  throughput cost {cost:.1%}, proxy {cost_proxy:.1%}; "
            f"capture/proxy cost ratio {ratio:.2f} (target < 0.5)"
        )
        print(
            f"  CPU cost per request {cpu_cost:.2f} us, proxy {cpu_proxy:.2f} us; "
            f"capture/proxy CPU cost ratio {cpu_ratio:.2f}"
        )
        print(
            f"  per round (against that round's bare and proxy runs): median "
            f"{statistics.median(per_round) if per_round else float('nan'):.2f}, "
            + " ".join(f"{x:.2f}" for x in per_round)
        )
        print(
            "  agent CPU per captured request: "
            f"{statistics.median(mode.cpu_loaded) * 1e6:.1f} us while nginx was under load, "
            f"{statistics.median(mode.cpu_all) * 1e6:.1f} us in all (decoding done "
            f"{statistics.median(mode.catch_up):.1f} s after the load ended)"
        )
        print(
            f"  completeness: {mode.whole} whole RRPairs for {mode.served} requests served "
            f"({100 * mode.whole / max(mode.served, 1):.2f}%), "
            f"{mode.captured - mode.whole} RRPairs flagged (gap/incomplete); drops: "
            + (", ".join(f"{k[5:]}={v}" for k, v in sorted(mode.drops.items())) or "none")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
