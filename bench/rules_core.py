"""Edge rules per RRPair: agent/rules (Python) against the Rust core (nodetap_core.Rules),
same RRPairs, same rules, interleaved in one run.

The RRPairs are small keep-alive exchanges (bench/core_decode.py's nginx/curl request and
response), made by the core's decoder, with an Authorization header and a small JSON body
added to half of them. Python: parse the protobuf bytes, then RuleEngine.apply (the parse
measured apart and subtracted); core: Rules.apply(bytes) minus the same call with rules that
do nothing (protobuf decoding and encoding and the call from Python: the decoder calls the
rules on its own structs, without any of these). Prints process CPU per RRPair and the
ratio, per rule set.

    .venv/bin/python bench/rules_core.py [--pairs 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import nodetap_core  # noqa: E402

from agent.rules import RuleEngine, parse  # noqa: E402
from agent.rules.config import to_json  # noqa: E402
from agent.rules.engine import default_ruleset  # noqa: E402
from agent.rules.example import EXAMPLE  # noqa: E402
from nodetap.v1 import rrpair_pb2 as pb  # noqa: E402
from tests.core.paths import Conn, conversation, core_path  # noqa: E402

KEY = b"k" * 32
BODY = b'{"user": {"name": "bob", "password": "hunter2"}, "items": [1, 2, 3]}'
REQ = (  # bench/core_decode.py's exchange
    b"GET /small.txt HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: curl/7.88.1\r\n"
    b"Accept: */*\r\n\r\n"
)
RES = (
    b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: Fri, 04 Dec 2026 13:00:00 GMT\r\n"
    b"Content-Type: text/plain\r\nContent-Length: 6\r\nLast-Modified: Fri, 04 Dec 2026 "
    b'12:00:00 GMT\r\nConnection: keep-alive\r\nETag: "1-6"\r\nAccept-Ranges: bytes\r\n'
    b"\r\nhello\n"
)


def batches(exchanges: int, per_conn: int = 100) -> list[bytes]:
    pieces: list[tuple[str, bytes | int]] = [("req", REQ), ("res", RES)] * per_conn
    return [b"".join(conversation(Conn(c + 1), pieces)) for c in range(exchanges // per_conn)]


def rrpairs(n: int) -> list[bytes]:
    out = []
    for i, data in enumerate(core_path(batches(n))[0]):
        p = pb.RRPair.FromString(data)
        if i % 2:
            p.http.req.headers.add(name="Authorization", value="Bearer abcdef0123456789")
            p.http.req.body, p.http.req.body_size = BODY, len(BODY)
        out.append(p.SerializeToString())
    return out


def cpu(fn: Callable[[], object], n: int) -> float:
    t = time.process_time()
    fn()
    return (time.process_time() - t) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    data = rrpairs(args.pairs)
    n = len(data)
    print(f"{n} RRPairs, {sum(map(len, data)) // n} bytes each on average")
    noop = nodetap_core.Rules('{"builtin": [], "redact": {"headers": [], "patterns": []}}', KEY)
    for name, rs in (("defaults", default_ruleset()), ("example", parse(EXAMPLE))):
        engine = RuleEngine(rs, announce=False, key=KEY)
        core = nodetap_core.Rules(to_json(rs), KEY)
        per: dict[str, list[float]] = {k: [] for k in ("parse", "python", "noop", "core")}
        for _ in range(args.rounds):
            per["parse"].append(cpu(lambda: [pb.RRPair.FromString(d) for d in data], n))
            per["python"].append(
                cpu(lambda: [engine.apply(pb.RRPair.FromString(d)) for d in data], n)  # noqa: B023
            )
            per["noop"].append(cpu(lambda: [noop.apply(d) for d in data], n))
            per["core"].append(cpu(lambda: [core.apply(d) for d in data], n))  # noqa: B023
        med = {k: statistics.median(v) for k, v in per.items()}
        py, rust = med["python"] - med["parse"], max(med["core"] - med["noop"], 0.01)
        print(
            f"{name:9} python {py:7.2f} us   core {rust:6.2f} us "
            f"(+{med['noop']:.2f} us protobuf and call)   ratio python/core {py / rust:6.1f}x"
        )


if __name__ == "__main__":
    main()
