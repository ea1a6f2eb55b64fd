"""Ring-buffer overflow never loses a connection silently (issue 18, item 4).

Several concurrent multi-MiB loopback transfers between real peers overflow the BPF ring
buffer faster than the capture empties it. What must hold, on both sides (INBOUND
in the server, OUTBOUND in the client), compared with the clients' own account of every
request and with nginx's access log:

- every connection yields one RRPair per request: none is missing, whatever was dropped;
- an RRPair that is not flagged is exact (URL, status, body byte for byte);
- an RRPair whose bytes were lost carries `gap`, and the kernel counted the loss: the
  connections flagged `gap` are those the kernel says lost data records
  (drop_ringbuf_data_connections), unless another counted loss explains one;
- no open, address or close record was lost (drop_ringbuf_control_records stays 0): the
  ring keeps room for them (bpf/common.h).

The capture decodes as `nodetap capture` does: at once, in the Rust core.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest

from nodetap.v1 import rrpair_pb2 as pb
from tests.support.capture import LiveCapture, live_capture
from tests.support.peers.uvicorn_bodies import body_of, uvicorn_server
from tests.support.servers import nginx

pytestmark = [pytest.mark.bpf, pytest.mark.root, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
MiB = 1 << 20
SIZES = (1 * MiB, 3 * MiB, 5 * MiB)
CONNS = 4
LIMITS = {"max_body": 8 * MiB}
SMALL_RING = 64  # pages: 256 KiB, a few records' worth: overflow is certain
# losses other than ring overflow that can flag an RRPair `gap` (a single write past the
# per-syscall copy limit, iovecs past their limit, sendfile): issue 18's other parts
OTHER_LOSSES = ("drop_truncated_bytes", "drop_iov_bytes", "drop_sendfile_bytes")

Expected = list[tuple[str, int]]  # per connection: (path, body bytes) in order


def aiohttp_fetch(url: str, conns: int, sizes: tuple[int, ...]) -> list[dict[str, object]]:
    """Run the aiohttp client (tests/support/peers/aiohttp_fetch.py); its own account."""
    cmd = [sys.executable, "-m", "tests.support.peers.aiohttp_fetch", url, str(conns)]
    cmd.append(",".join(str(s) for s in sizes))
    out = subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, text=True, timeout=120)
    result: list[dict[str, object]] = json.loads(out.stdout)
    return result


def curl_fetch(base: str, conns: int, names: list[str]) -> list[tuple[int, list[str]]]:
    """conns concurrent curl processes, each fetching every name over one connection;
    returns, per process, (its local port, its lines "code size url")."""
    fmt = "%{local_port} %{http_code} %{size_download} %{url_effective}\n"
    procs = []
    for _ in range(conns):
        cmd = ["curl", "-s", "--max-time", "60", "-w", fmt]
        for name in names:
            cmd += ["-o", "/dev/null", f"{base}/{name}"]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True))
    out = []
    for proc in procs:
        stdout, _ = proc.communicate(timeout=90)
        assert proc.returncode == 0, stdout
        lines = stdout.split()
        ports = {int(lines[i]) for i in range(0, len(lines), 4)}
        assert len(ports) == 1, f"curl used more than one connection: {stdout}"
        out.append((ports.pop(), [" ".join(lines[i + 1 : i + 4]) for i in range(0, len(lines), 4)]))
    return out


def by_connection(
    pairs: list[pb.RRPair], key: Callable[[pb.RRPair], int]
) -> dict[int, list[pb.RRPair]]:
    groups: dict[int, list[pb.RRPair]] = defaultdict(list)
    for p in pairs:
        groups[key(p)].append(p)
    for g in groups.values():
        g.sort(key=lambda p: (p.ts.seconds, p.ts.nanos))
    return groups


def check_connection(pairs: list[pb.RRPair], expected: Expected, where: str) -> bool:
    """One RRPair per request, each exact or flagged `gap`; True if any is flagged."""
    urls = [p.http.req.url for p in pairs]
    assert len(pairs) == len(expected), f"{where}: {len(pairs)} RRPairs for {expected}: {urls}"
    flagged = False
    for p, (path, size) in zip(pairs, expected, strict=True):
        if "gap" in p.flags:
            flagged = True
            continue
        assert not p.flags, f"{where} {path}: flags {list(p.flags)}"
        assert p.http.req.method == "GET" and p.http.req.url == path, f"{where}: {urls}"
        assert p.http.res.status_code == 200, f"{where} {path}"
        assert p.http.res.body_size == size, f"{where} {path}: {p.http.res.body_size}"
        assert p.http.res.body == body_of(size), f"{where} {path}: body differs"
    return flagged


def check_losses(lc: LiveCapture, flagged_conns: int) -> dict[str, int]:
    s = lc.cap.summary()
    losses = {k: s[k] for k in (*OTHER_LOSSES, "drop_ringbuf_data_records")}
    assert s["drop_ringbuf_control_records"] == 0, s
    assert s["orphan_records"] == 0, s
    lost_conns = s["drop_ringbuf_data_connections"]
    if s["drop_ringbuf_data_records"]:
        assert lost_conns > 0, s
    # every connection that lost data to the ring is flagged; without another loss,
    # nothing else is
    assert flagged_conns >= lost_conns, (flagged_conns, losses)
    if not any(s[k] for k in OTHER_LOSSES):
        assert flagged_conns == lost_conns, (flagged_conns, losses)
    return s


def run_uvicorn(ringbuf_pages: int | None) -> dict[str, int]:
    ring = {"ringbuf_pages": ringbuf_pages} if ringbuf_pages else {}
    ring.update(LIMITS)
    # leaving the capture decodes what the ring still holds (as Ctrl-C does)
    with uvicorn_server() as srv, live_capture(ports=[srv.port], **ring) as lc:
        account = aiohttp_fetch(srv.url, CONNS, SIZES)
    expected = [(f"/bytes/{n}", n) for n in SIZES]
    for conn in account:
        assert conn["requests"] == [[path, 200, n] for path, n in expected], account
    flagged = 0
    outbound = by_connection(lc.outbound(), lambda p: p.client.port)
    assert sorted(outbound) == sorted(int(str(c["port"])) for c in account), outbound.keys()
    for port, pairs in outbound.items():
        flagged += check_connection(pairs, expected, f"uvicorn OUTBOUND :{port}")
    inbound = by_connection(lc.inbound(), lambda p: p.meta.conn_id)
    assert len(inbound) == CONNS, {k: [p.http.req.url for p in v] for k, v in inbound.items()}
    for cid, pairs in inbound.items():
        flagged += check_connection(pairs, expected, f"uvicorn INBOUND conn {cid}")
    return check_losses(lc, flagged)


def run_nginx(ringbuf_pages: int | None) -> dict[str, int]:
    ring = {"ringbuf_pages": ringbuf_pages} if ringbuf_pages else {}
    ring.update(LIMITS)
    files = {f"f{n}.bin": body_of(n) for n in SIZES}
    with nginx(files=files) as srv:
        with live_capture(ports=[srv.port], **ring) as lc:
            account = curl_fetch(srv.url, CONNS, list(files))
        log = srv.access_log_lines()
    expected = [(f"/f{n}.bin", n) for n in SIZES]
    for _port, lines in account:
        assert lines == [f"200 {n} {srv.url}{path}" for path, n in expected], lines
    assert len(log) == CONNS * len(SIZES), log
    assert sorted(line.split('"')[1] for line in log) == sorted(
        f"GET {path} HTTP/1.1" for path, _ in expected * CONNS
    )
    flagged = 0
    outbound = by_connection(lc.outbound(), lambda p: p.client.port)
    assert sorted(outbound) == sorted(port for port, _ in account), outbound.keys()
    for port, pairs in outbound.items():
        flagged += check_connection(pairs, expected, f"curl OUTBOUND :{port}")
    inbound = by_connection(lc.inbound(), lambda p: p.meta.conn_id)
    assert len(inbound) == CONNS, {k: [p.http.req.url for p in v] for k, v in inbound.items()}
    for cid, pairs in inbound.items():
        flagged += check_connection(pairs, expected, f"nginx INBOUND conn {cid}")
    return check_losses(lc, flagged)


def test_uvicorn_and_aiohttp_with_the_default_ring_lose_no_connection() -> None:
    run_uvicorn(None)


def test_nginx_and_curl_with_the_default_ring_lose_no_connection() -> None:
    run_nginx(None)


def test_uvicorn_overflowing_a_small_ring_flags_every_loss() -> None:
    s = run_uvicorn(SMALL_RING)
    assert s["drop_ringbuf_data_records"] > 0, s  # the ring did overflow
    assert s["reserved_room_records"] >= 0


def test_nginx_overflowing_a_small_ring_flags_every_loss() -> None:
    s = run_nginx(SMALL_RING)
    assert s["drop_ringbuf_data_records"] > 0, s
