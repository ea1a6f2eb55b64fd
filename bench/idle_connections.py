"""What idle keep-alive connections cost the capture in memory, against what they cost nginx.

nginx (one worker) on loopback with `nodetap capture` on its port (RRPairs to a file,
decoded at once by the Rust core). N clients each open a connection, send one request,
read the answer and stay connected, idle (keep-alive). Measured in the same run:
  - the agent's resident memory (VmRSS of the capture process) before, with the N idle
    connections open, and after all of them closed; the connections it tracks
    (nodetap_connections_open, from its /metrics);
  - the nginx worker's resident memory at the same moments (the peer: a server holds
    state per keep-alive connection too);
  - a second round of N connections opened and closed: how much more the capture grows
    (what the first round freed is either used again or leaked).
Prints KiB per idle connection for both and their ratio, and whether the capture let go
of the connections on close. Bounded: N ≤ 4000 (nginx's worker_connections is 4096),
every wait ≤ 60 s. No thresholds: run it, read the lines.

    .venv/bin/python bench/idle_connections.py [--connections 3000]
"""

from __future__ import annotations

import argparse
import contextlib
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.servers import free_port, nginx  # noqa: E402

REQUEST = b"GET /hello HTTP/1.1\r\nHost: bench\r\n\r\n"


def rss_kib(pid: int, field: str = "VmRSS") -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def metric(addr: str, name: str) -> float:
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=5) as r:
        text = r.read().decode()
    m = re.search(rf"^{name} ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else -1.0


def count_lines(path: Path) -> int:
    with contextlib.suppress(FileNotFoundError), path.open("rb") as f:
        return sum(1 for _ in f)
    return 0


def wait_for(cond: object, timeout: float = 60) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


def settle(pid: int) -> int:
    """The process's RSS once it stops moving (a second without change), in KiB."""
    last, same = -1, 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and same < 5:
        now = rss_kib(pid)
        same = same + 1 if now == last else 0
        last = now
        time.sleep(0.2)
    return last


def open_idle(port: int, n: int) -> list[socket.socket]:
    """n keep-alive connections, each after one answered request, left idle."""
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(REQUEST)
        got = b""
        while not got.endswith(b"hello world\n"):  # nginx's /hello
            chunk = s.recv(4096)
            if not chunk:
                raise RuntimeError("nginx closed a connection the bench keeps open")
            got += chunk
        socks.append(s)
    return socks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=3000)
    args = ap.parse_args()
    n = max(1, min(args.connections, 4000))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, n + 256)), hard))
    tmp = Path(tempfile.mkdtemp(prefix="nodetap-idle-"))
    with nginx(extra="keepalive_timeout 300s;") as backend:
        worker = backend.worker_pids[0]
        out, log = tmp / "pairs.jsonl", tmp / "agent.log"
        maddr = f"127.0.0.1:{free_port()}"
        agent = subprocess.Popen(
            [sys.executable, "-m", "cli", "capture", "--port", str(backend.port)]
            + ["-o", str(out), "--metrics-addr", maddr],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=log.open("w"),
        )
        try:
            if not wait_for(lambda: "capturing" in log.read_text()):
                print(f"the capture did not start: {log.read_text()[-500:]}", file=sys.stderr)
                return 1
            agent0, nginx0 = settle(agent.pid), settle(worker)
            anon0, file0 = rss_kib(agent.pid, "RssAnon"), rss_kib(agent.pid, "RssFile")
            socks = open_idle(backend.port, n)
            # both sides of every exchange written: the capture is done with them
            wait_for(lambda: count_lines(out) >= n)
            agent1, nginx1 = settle(agent.pid), settle(worker)
            tracked = metric(maddr, "nodetap_connections_open")
            for s in socks:
                s.close()
            wait_for(lambda: metric(maddr, "nodetap_connections_open") == 0)
            agent2, nginx2 = settle(agent.pid), settle(worker)
            tracked_after = metric(maddr, "nodetap_connections_open")
            # the same again: memory the first round's connections freed is used again
            socks = open_idle(backend.port, n)
            wait_for(lambda: count_lines(out) >= 2 * n)
            for s in socks:
                s.close()
            wait_for(lambda: metric(maddr, "nodetap_connections_open") == 0)
            agent3 = settle(agent.pid)
        finally:
            agent.send_signal(signal.SIGINT)
            try:
                agent.wait(timeout=60)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
    per_agent = (agent1 - agent0) / n
    per_nginx = (nginx1 - nginx0) / n
    print(f"{n} idle keep-alive connections, {count_lines(out)} RRPairs captured")
    print(f"{'':24}{'before':>10}{'idle':>10}{'closed':>10}  KiB per idle connection")
    print(f"{'nodetap capture (KiB)':24}{agent0:>10}{agent1:>10}{agent2:>10}  {per_agent:.2f}")
    print(f"{'nginx worker (KiB)':24}{nginx0:>10}{nginx1:>10}{nginx2:>10}  {per_nginx:.2f}")
    print(f"the capture at start: {anon0} KiB anonymous, {file0} KiB of mapped files")
    print(f"ratio capture/nginx per idle connection: {per_agent / max(per_nginx, 0.01):.2f}")
    print(
        f"connections tracked: {tracked:.0f} while idle, {tracked_after:.0f} after close; "
        f"memory kept after close: {agent2 - agent0} KiB "
        f"({(agent2 - agent0) / max(agent1 - agent0, 1):.0%} of what the connections took)"
    )
    print(
        f"a second round of {n} connections opened and closed: the capture grew "
        f"{agent3 - agent2} KiB more (0: what the first round freed was used again)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
