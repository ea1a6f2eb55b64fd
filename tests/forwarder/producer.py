"""A small real agent-side producer for tests: RRPairs -> (edge rules) -> ForwarderSink.

    python -m tests.forwarder.producer --forwarder ADDR [--spool-dir DIR] [--rules FILE]
        (--input CAPTURE.jsonl | --target-port PORT --count N) [--interval S] [--flush S]
        [--max-memory N] [--max-spool N] [--token T] [--tls-ca F] [--hold]

It prints "put <n>" after each RRPair, then "COUNTERS <json>" after flushing (and closing).
With --target-port it makes one real HTTP request per RRPair to 127.0.0.1:PORT (a capture of
live traffic); tests kill it with SIGKILL or stop it by PID.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator

from prometheus_client import REGISTRY

from agent.rrpairs import RRPairIds
from agent.rules import RuleEngine
from agent.sinks.forwarder import ForwarderSink
from nodetap import jsonl
from nodetap.transport import ClientTLS
from nodetap.v1 import rrpair_pb2 as pb
from tests.forwarder.traffic import exchange_pairs, simple_requests


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--forwarder", required=True)
    ap.add_argument("--spool-dir")
    ap.add_argument("--rules")
    ap.add_argument("--input")
    ap.add_argument("--target-port", type=int)
    ap.add_argument("--count", type=int, default=0)
    ap.add_argument("--id-prefix", default="prod")
    ap.add_argument("--interval", type=float, default=0.0)
    ap.add_argument("--flush", type=float, default=120.0)
    ap.add_argument("--close", type=float, default=1.0)
    ap.add_argument("--max-memory", type=int, default=64 * 1024 * 1024)
    ap.add_argument("--max-spool", type=int, default=1024 * 1024 * 1024)
    ap.add_argument("--batch-pairs", type=int, default=16)
    ap.add_argument("--token")
    ap.add_argument("--tls-ca")
    ap.add_argument("--hold", action="store_true", help="after flushing, wait for stdin to close")
    args = ap.parse_args()

    rules = RuleEngine.from_file(args.rules, reload_interval=0.2) if args.rules else None
    sink = ForwarderSink(
        args.forwarder,
        spool_dir=args.spool_dir,
        token=args.token,
        tls=ClientTLS(args.tls_ca) if args.tls_ca else None,
        max_memory_bytes=args.max_memory,
        max_spool_bytes=args.max_spool,
        batch_max_pairs=args.batch_pairs,
        linger=0.02,
    )
    pairs: Iterator[pb.RRPair]
    if args.input:
        pairs = jsonl.read_path(args.input)
    else:
        reqs = simple_requests(args.count)
        pairs = exchange_pairs(args.target_port, reqs, RRPairIds(args.id_prefix))
    for n, pair in enumerate(pairs, 1):
        kept = rules.apply(pair) if rules else pair
        if kept is not None:
            sink.put(kept)
        print(f"put {n}", flush=True)
        if args.interval:
            time.sleep(args.interval)
    flushed = sink.flush(args.flush)
    print(f"FLUSHED {json.dumps(flushed)}", flush=True)
    if args.hold:
        sys.stdin.read()
    sink.close(args.close)
    print(f"COUNTERS {json.dumps(sink.counters())}", flush=True)
    matches = {
        s.labels["rule"]: int(s.value)
        for metric in REGISTRY.collect()
        if metric.name == "nodetap_rule_matches"
        for s in metric.samples
        if s.name.endswith("_total")
    }
    print(f"RULES {json.dumps(matches)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
