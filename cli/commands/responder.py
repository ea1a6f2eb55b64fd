"""`nodetap responder`: serve a capture's recorded exchanges as mocks (HTTP/1.x, h2c, gRPC)."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from typing import Any

from nodetap.signals import stop_on_signals

EPILOG = """\
examples:
  nodetap responder deps.jsonl --listen 127.0.0.1:8081
  nodetap responder cap.jsonl --listen :9000 --direction any --ignore-json-path '$..requestId'
  nodetap responder cap.jsonl --listen 127.0.0.1:8081 --pid 4242 --report mocks.json

A request is answered with the recorded response of the same method, path, query (in any order)
and body (headers ignored; in JSON bodies the --ignore-json-path paths too). Identical requests
get the recorded answers in recorded order, then the last one again. Anything else gets
404 with a body saying what was asked and what was recorded; at exit (Ctrl-C, SIGTERM) the
counts of served and unmatched requests per dependency are printed.

HTTP/2 with prior knowledge (h2c) is served on the same port from the same recordings; a
gRPC call matches by its :path and request messages, and an unmatched one gets
UNIMPLEMENTED with a message saying what was recorded (counted as unmatched).
"""


def register(sub: Any) -> None:
    p = sub.add_parser(
        "responder",
        help="serve a capture's recorded exchanges as mocks",
        description="Answer HTTP/1.x, h2c and gRPC requests with the responses recorded in "
        "a capture.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("capture", help="RRPair JSONL capture")
    p.add_argument("--listen", required=True, metavar="ADDR", help="HOST:PORT to serve on")
    p.add_argument(
        "--direction",
        choices=("outbound", "inbound", "network", "any"),
        default="outbound",
        help="which recorded exchanges become mocks (default outbound: what the captured "
        "processes asked their dependencies)",
    )
    p.add_argument("--pid", type=int, action="append", help="only the exchanges of this process")
    p.add_argument("--ignore-json-path", action="append", metavar="PATH", help="$.a.b, $..id")
    p.add_argument("--report", metavar="FILE", help="write the counts as JSON at exit")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nodetap.errors import InputError
    from replay.mocks import load_mocks
    from replay.responder import Responder, parse_listen

    host, port = parse_listen(args.listen)
    mocks = load_mocks(
        args.capture,
        args.direction,
        args.ignore_json_path or [],
        set(args.pid) if args.pid else None,
    )
    if not len(mocks):
        raise InputError(
            f"capture {args.capture} holds no complete {args.direction} HTTP exchange to serve; "
            "give --direction any or another capture"
        )
    stop = threading.Event()
    stop_on_signals(stop)
    r = Responder(mocks, host, port)
    r.listen()
    deps = ", ".join(mocks.dependencies) or "-"
    print(
        f"responder: {len(mocks)} mocks of {deps} on {host}:{r.port}; Ctrl-C to stop",
        file=sys.stderr,
        flush=True,
    )
    r.serve(stop)
    rep = mocks.report()
    if args.report:
        with open(args.report, "w") as f:
            json.dump(rep, f, indent=2)
    for dep, c in rep["by_dependency"].items():
        print(
            f"responder: {dep}: {c['served']} served, {c['unmatched']} unmatched "
            f"({c['recorded']} recorded)",
            file=sys.stderr,
        )
    if rep["unsafe"]:
        print(
            f"responder: {rep['unsafe']} recorded answers not sent (CR/LF or a non-byte "
            "character in a header or the reason would split the response): 502 instead",
            file=sys.stderr,
        )
    return 0
