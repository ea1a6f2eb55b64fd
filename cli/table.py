"""A human-readable line per RRPair (`--format table`)."""

from __future__ import annotations

from typing import IO

from nodetap.v1 import rrpair_pb2 as pb

HEADER = (
    f"{'TIME':<12} {'DIR':<3} {'PID':>7} {'COMM':<12} {'CLIENT':<21} {'SERVER':<21} "
    f"{'METHOD':<7} {'STATUS':>6} {'MS':>8} {'REQ B':>8} {'RES B':>8}  URL  FLAGS"
)

_DIR = {pb.INBOUND: "in", pb.OUTBOUND: "out", pb.NETWORK: "net"}


def format_row(pair: pb.RRPair) -> str:
    req = pair.http.req
    res = pair.http.res
    has_res = pair.http.HasField("res")
    t = pair.ts.ToDatetime()
    status = str(res.status_code) if has_res else "-"
    flags = ",".join(pair.flags)
    return (
        f"{t:%H:%M:%S}.{t.microsecond // 1000:03d} {_DIR.get(pair.direction, '?'):<3} "
        f"{pair.meta.pid:>7} {pair.meta.comm[:12]:<12} "
        f"{pair.client.ip + ':' + str(pair.client.port):<21} "
        f"{pair.server.ip + ':' + str(pair.server.port):<21} "
        f"{req.method[:7]:<7} {status:>6} {pair.duration_us / 1000:>8.2f} "
        f"{req.body_size:>8} {res.body_size:>8}  {req.url[:80]}  {flags}"
    ).rstrip()


class TableWriter:
    """Writes the header once, then a line per RRPair."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out
        self._started = False

    def write(self, pair: pb.RRPair) -> None:
        if not self._started:
            self.out.write(HEADER + "\n")
            self._started = True
        self.out.write(format_row(pair) + "\n")
        self.out.flush()
