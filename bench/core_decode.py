"""Agent CPU per RRPair: the Python decoding path against the Rust core, same records.

Ring-buffer batches of small keep-alive HTTP/1.1 exchanges (the request and response
nginx and curl exchange for a small file), as the BPF programs write them, decoded by the
Python record loop (agent/capture.py: streams, parser, stitcher, protobuf RRPairs) and by
nodetap_core (the same, protobuf RRPairs out), interleaved in the same run. Prints the
process CPU time per RRPair of each and the ratio. The issue's target: the core at <= 2 us
per small exchange.

    .venv/bin/python bench/core_decode.py [--exchanges 20000] [--rounds 3] [--jsonl]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.core.paths import Conn, conversation, core_path, python_path  # noqa: E402

REQ = (
    b"GET /small.txt HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: curl/7.88.1\r\n"
    b"Accept: */*\r\n\r\n"
)
RES = (
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Fri, 04 Dec 2026 13:00:00 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 6\r\nLast-Modified: Fri, 04 Dec 2026 "
    b'12:00:00 GMT\r\nConnection: keep-alive\r\nETag: "1-6"\r\nAccept-Ranges: bytes\r\n'
    b"\r\nhello\n"
)


def batches(exchanges: int, per_conn: int = 100, per_batch: int = 2000) -> list[bytes]:
    recs: list[bytes] = []
    for c in range(exchanges // per_conn):
        pieces: list[tuple[str, bytes | int]] = [("req", REQ), ("res", RES)] * per_conn
        recs += conversation(Conn(c + 1, fd=c % 1000 + 3), pieces)
    return [b"".join(recs[i : i + per_batch]) for i in range(0, len(recs), per_batch)]


def cpu(fn: object, *args: object) -> tuple[float, int]:
    t = time.process_time()
    n = fn(*args)  # type: ignore[operator]
    return time.process_time() - t, n


def run_python(bs: list[bytes]) -> int:
    return len(python_path(bs))


def run_core(bs: list[bytes]) -> int:
    return len(core_path(bs)[0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--exchanges", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    bs = batches(args.exchanges)
    per: dict[str, list[float]] = {"python": [], "core": []}
    for _ in range(args.rounds):
        for name, fn in (("python", run_python), ("core", run_core)):
            seconds, n = cpu(fn, bs)
            assert n == args.exchanges, (name, n)
            per[name].append(seconds / n * 1e6)
    py, core = (statistics.median(per[k]) for k in ("python", "core"))
    print(
        f"records: {sum(len(b) for b in bs) >> 10} KiB in {len(bs)} batches, "
        f"{args.exchanges} exchanges"
    )
    print(f"python path  {py:8.2f} us CPU per RRPair (median of {args.rounds})")
    print(f"rust core    {core:8.2f} us CPU per RRPair (median of {args.rounds})")
    print(f"ratio python/core {py / core:6.1f}x   (target: core <= 2 us)")


if __name__ == "__main__":
    main()
