"""Requests per second against nginx on loopback: nodetap replay (asap) versus hey and wrk, in
one run, keep-alive and connection-close; the replay's CPU per request; and the HTTP client
choice (asyncio protocol + httptools, asyncio streams + httptools, aiohttp) on one core.

    .venv/bin/python bench/replay_rate.py [--requests 30000] [--concurrency 32]

Prints ratios, no thresholds. Numbers are noisy on shared 2-core machines: compare ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.replay.helpers import record  # noqa: E402
from tests.support.servers import nginx  # noqa: E402


def _rps(text: str) -> float:
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    return float(m.group(1)) if m else 0.0


def run_hey(url: str, n: int, c: int, close: bool) -> float:
    argv = ["hey", "-n", str(n), "-c", str(c)] + (["-disable-keepalive"] if close else []) + [url]
    return _rps(subprocess.run(argv, capture_output=True, text=True, check=True).stdout)


def run_wrk(url: str, seconds: int, c: int, close: bool) -> float:
    argv = ["wrk", "-t2", f"-c{c}", f"-d{seconds}s"]
    argv += ["-H", "Connection: close"] if close else []
    return _rps(subprocess.run([*argv, url], capture_output=True, text=True, check=True).stdout)


def run_replay(cap: Path, url: str, loops: int, c: int, close: bool) -> tuple[float, float, int]:
    """(achieved req/s, CPU seconds of the whole replay, requests) via the CLI."""
    argv = [sys.executable, "-m", "cli", "replay", str(cap), "--target", url, "--vusers",
            str(c), "--loop", str(loops), "--json", "--no-progress", "--summary-only",
            "--connection", "close" if close else "keepalive"]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=ROOT)
    out = proc.stdout.read() if proc.stdout else b""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    rep = json.loads(out)
    cpu = usage.ru_utime + usage.ru_stime
    return rep["rate"]["achieved_per_s"], cpu, rep["requests"]["responses"]


# -- client choice: one process, C concurrent keep-alive connections --------------------------
async def _bench_protocol(host: str, port: int, n: int, c: int) -> float:
    from replay.client import Pool

    pool = Pool(host, port)
    req = f"GET /hello HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    left = n

    async def user() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            conn, _ = await pool.acquire()
            await conn.request(req, False, 10)
            pool.release(conn, True)

    t = time.perf_counter()
    await asyncio.gather(*(user() for _ in range(c)))
    pool.close()
    return n / (time.perf_counter() - t)


async def _bench_streams(host: str, port: int, n: int, c: int) -> float:
    import httptools

    req = f"GET /hello HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    left = n

    class P:
        done = False

        def on_message_complete(self) -> None:
            self.done = True

    async def user() -> None:
        nonlocal left
        r, w = await asyncio.open_connection(host, port)
        while left > 0:
            left -= 1
            w.write(req)
            p = P()
            parser = httptools.HttpResponseParser(p)
            while not p.done:
                parser.feed_data(await r.read(65536))
        w.close()

    t = time.perf_counter()
    await asyncio.gather(*(user() for _ in range(c)))
    return n / (time.perf_counter() - t)


async def _bench_aiohttp(url: str, n: int, c: int) -> float:
    import aiohttp

    left = n
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=c)) as s:

        async def user() -> None:
            nonlocal left
            while left > 0:
                left -= 1
                async with s.get(url + "/hello") as r:
                    await r.read()

        t = time.perf_counter()
        await asyncio.gather(*(user() for _ in range(c)))
        return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=30000)
    ap.add_argument("--concurrency", type=int, default=32)
    args = ap.parse_args()
    n, c = args.requests, args.concurrency
    for tool in ("hey", "wrk", "nginx"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            sys.exit(f"bench: {tool} not found; run scripts/setup.sh")
    with nginx(workers=1) as ng, tempfile.TemporaryDirectory() as tmp:
        url = ng.url + "/hello"
        cap = Path(tmp) / "cap.jsonl"
        reqs = [("GET", "/hello", [("User-Agent", "bench")], b"")] * 1000
        record("127.0.0.1", ng.port, reqs, cap)
        cpus = os.cpu_count()
        print(f"nginx on loopback, {n} requests (close: {n // 4}), concurrency {c}, {cpus} CPUs")
        for close in (False, True):
            m = n // 4 if close else n
            label = "close    " if close else "keepalive"
            hey = run_hey(url, m, c, close)
            wrk = run_wrk(url, 3, c, close)
            rate, cpu, done = run_replay(cap, ng.url, max(1, m // 1000), c, close)
            print(f"{label}  replay {rate:8.0f}/s  hey {hey:8.0f}/s  wrk {wrk:8.0f}/s  "
                  f"replay/hey {rate / hey:5.2f}  replay/wrk {rate / wrk:5.2f}  "
                  f"replay CPU {1e6 * cpu / max(1, done):6.1f} us/request")  # fmt: skip
        k = min(n, 20000)
        host, port = "127.0.0.1", ng.port
        proto = asyncio.run(_bench_protocol(host, port, k, c))
        streams = asyncio.run(_bench_streams(host, port, k, c))
        aio = asyncio.run(_bench_aiohttp(ng.url, k, c))
        print(
            f"client, 1 process: protocol+httptools {proto:7.0f}/s  "
            f"streams+httptools {streams:7.0f}/s ({proto / streams:4.2f}x)  "
            f"aiohttp {aio:7.0f}/s ({proto / aio:4.2f}x)"
        )


if __name__ == "__main__":
    main()
