"""Benchmark: live packet mode, packets per second per core of agent CPU, against tcpdump.

nginx (one worker) on 127.0.0.1; h2load --h1 sends a fixed number of requests over
keep-alive connections; while it runs, two captures watch the same loopback traffic:
  - nodetap's live packet mode (BPF socket filter, TPACKET_V3 ring, frames decoded, TCP
    reassembled and HTTP parsed in the core; RRPairs encoded as JSON lines and counted),
    in its own process
  - tcpdump -i lo -w /dev/null with the same port filter (the peer: capture only)
Each process's CPU (user + sys) is counted whole from ready to exit (its /proc stat when it
is ready, its rusage when it exits). Printed: packets, CPU seconds, packets per CPU second,
kernel drops of both (nothing lost silently), RRPairs against requests, and the ratio
nodetap / tcpdump in packets per CPU second. No thresholds: run it, read the ratio.

    .venv/bin/python bench/packet_rate.py [--requests 200000] [--connections 16] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from capture_overhead import cpu_seconds, wait_cpu_seconds  # noqa: E402

from tests.support.servers import nginx  # noqa: E402

AGENT = r"""
import json, sys, threading
from agent.packet.live import run_packet_capture
port = int(sys.argv[1])
stop, ready = threading.Event(), threading.Event()
lines = 0
def on_exchange(c):
    global lines
    c.json_line()
    lines += 1
out = {}
def run():
    out.update(run_packet_capture("lo", [port], lambda p: None, stop, 1 << 20, ready=ready,
                                  on_exchange=on_exchange, jsonl=True))
t = threading.Thread(target=run)
t.start()
ready.wait(60)
print("ready", flush=True)
sys.stdin.read()
stop.set()
t.join()
out["lines"] = lines
print(json.dumps(out), flush=True)
"""


def one_round(port: int, url: str, requests: int, connections: int) -> dict[str, float]:
    agent = subprocess.Popen(
        [sys.executable, "-c", AGENT, str(port)], cwd=REPO,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    assert agent.stdout is not None and agent.stdin is not None
    if agent.stdout.readline().strip() != b"ready":
        raise SystemExit("the packet capture did not start")
    agent_cpu0 = cpu_seconds(agent.pid)
    tcpdump = subprocess.Popen(
        ["tcpdump", "-i", "lo", "-n", "-B", "32768", "-w", "/dev/null", f"tcp port {port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert tcpdump.stderr is not None
    tcpdump.stderr.readline()  # "listening on lo ..."
    dump_cpu0 = cpu_seconds(tcpdump.pid)
    try:
        subprocess.run(
            ["h2load", "--h1", "-n", str(requests), "-c", str(connections), url],
            check=True, capture_output=True, timeout=600,
        )  # fmt: skip
        time.sleep(1.0)  # the last frames reach both captures
    finally:
        tcpdump.send_signal(signal.SIGINT)
        agent.stdin.close()
    dump_err = tcpdump.stderr.read().decode()
    dump_cpu = wait_cpu_seconds(tcpdump, 60) - dump_cpu0
    summary = json.loads(agent.stdout.read())
    agent_cpu = wait_cpu_seconds(agent, 120) - agent_cpu0
    m = re.search(r"(\d+) packets captured", dump_err)
    d = re.search(r"(\d+) packets dropped by kernel", dump_err)
    return {
        "agent_packets": summary["packets"],
        "agent_cpu": agent_cpu,
        "agent_drops": summary["kernel_drops"],
        "rrpairs": summary["lines"],
        "gaps": summary["gaps"],
        "dump_packets": int(m.group(1)) if m else 0,
        "dump_cpu": dump_cpu,
        "dump_drops": int(d.group(1)) if d else -1,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=200_000)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=1)
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (BPF socket filter, packet sockets)")
    with nginx(workers=1) as ngx:
        for r in range(args.rounds):
            res = one_round(ngx.port, f"{ngx.url}/hello", args.requests, args.connections)
            a = res["agent_packets"] / max(res["agent_cpu"], 1e-9)
            t = res["dump_packets"] / max(res["dump_cpu"], 1e-9)
            print(f"round {r + 1}: {args.requests} requests, {args.connections} connections")
            print(
                f"  nodetap packet mode: {res['agent_packets']} packets, "
                f"{res['agent_cpu']:.2f} CPU s, {a:,.0f} packets/CPU s, "
                f"kernel drops {res['agent_drops']}, RRPairs {res['rrpairs']}, "
                f"gaps {res['gaps']}"
            )
            print(
                f"  tcpdump -w /dev/null: {res['dump_packets']} packets, "
                f"{res['dump_cpu']:.2f} CPU s, {t:,.0f} packets/CPU s, "
                f"kernel drops {res['dump_drops']}"
            )
            print(f"  ratio nodetap/tcpdump (packets per CPU second): {a / max(t, 1e-9):.2f}")


if __name__ == "__main__":
    main()
