"""Every place the capture can lose data has a counter, and each test here makes one move
with real traffic. Where the loss touches an exchange, the RRPair says so ("gap")."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agent import bpf_layout as L
from agent.capture import CaptureConfig, SyscallCapture
from nodetap.v1 import rrpair_pb2 as pb
from tests.support.capture import LiveCapture, live_capture
from tests.support.servers import free_port, nginx, python_server_process

pytestmark = [pytest.mark.bpf, pytest.mark.root]

REPO = Path(__file__).resolve().parents[2]


def peer(mode: str, port: int, arg: int | None = None) -> None:
    """Run a client from tests/capture/peers.py to completion."""
    cmd = [sys.executable, "-m", "tests.capture.peers", mode, str(port)]
    if arg is not None:
        cmd.append(str(arg))
    subprocess.run(cmd, cwd=REPO, check=True, timeout=60, capture_output=True)


@contextmanager
def peer_server(mode: str, port: int, arg: int | None = None) -> Iterator[int]:
    """Start a server from tests/capture/peers.py on `port` (after the capture started, so
    that its accept() is seen with its addresses); yields the port."""
    cmd = [sys.executable, "-m", "tests.capture.peers", mode, str(port)]
    if arg is not None:
        cmd.append(str(arg))
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        yield port
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def curl(url: str) -> bytes:
    return subprocess.run(
        ["curl", "-s", "--max-time", "20", url], capture_output=True, check=True, timeout=30
    ).stdout


def flagged(lc: LiveCapture, flag: str) -> list[pb.RRPair]:
    return [p for p in lc.pairs if flag in p.flags]


def test_ring_buffer_full_drops_data_and_flags_gap() -> None:
    # a 4 KiB ring cannot hold one 16 KiB data record
    with python_server_process() as srv, live_capture(ports=[srv.port], ringbuf_pages=1) as lc:
        body = curl(srv.url + "/bytes/100000")
        assert len(body) == 100000
        lc.settle()
        s = lc.cap.summary()
    assert s["drop_ringbuf_data_records"] > 0
    assert s["drop_ringbuf_data_bytes"] >= 16384
    assert s["stream_gap_bytes"] > 0
    assert flagged(lc, "gap"), [list(p.flags) for p in lc.pairs]


def test_ring_buffer_full_drops_control_records_and_orphans_are_counted() -> None:
    with python_server_process() as srv:
        cap = SyscallCapture(CaptureConfig(ports=[srv.port], ringbuf_pages=1), lambda p: None)
        cap.start()
        try:
            # nobody drains the ring while 60 connections open and close
            peer("sequential", srv.port, 60)
            s = cap.kernel_counters()
            assert s["drop_ringbuf_control_records"] > 0
            cap.poll()
            cap.poll()
        finally:
            cap.close()
    s = cap.summary()
    assert s["drop_ringbuf_control_records"] > 0
    assert s["drop_ringbuf_data_records"] > 0


def test_a_write_larger_than_the_tail_call_chain_is_counted_as_truncated() -> None:
    # one syscall is copied by a chain of at most 33 tail calls of NT_MAX_PIECES pieces
    # (about 35 MiB): a 40 MiB send() under a larger --max-body is cut, counted, flagged
    size = 40 << 20
    with (
        nginx() as srv,
        live_capture(ports=[srv.port], max_body=64 << 20, ringbuf_pages=32768) as lc,
    ):
        peer("big-write", srv.port, size)
        lc.wait_for(1, where=lambda p: p.direction == pb.OUTBOUND, timeout=60)
        lc.settle()
        s = lc.cap.summary()
    assert s["drop_truncated_bytes"] > 0
    out = [p for p in lc.outbound() if p.http.req.method == "POST"]
    assert out and "gap" in out[0].flags


def test_a_write_past_the_copy_bound_is_truncated_not_a_gap() -> None:
    # --max-body 256K: the programs copy 256K + 64K of the 2 MiB send() and report the
    # rest as skipped on purpose; the request is `truncated` (its bodySize whole), and
    # the exchange after it on the same connection is whole
    size = 2 << 20
    with nginx() as srv, live_capture(ports=[srv.port], max_body=256 << 10) as lc:
        peer("big-write", srv.port, size)
        lc.wait_for(1, where=lambda p: p.direction == pb.OUTBOUND)
        lc.settle()
        s = lc.cap.summary()
    assert s["bound_skipped_bytes"] > 0
    assert s["drop_truncated_bytes"] == 0
    out = next(p for p in lc.outbound() if p.http.req.method == "POST")
    assert list(out.flags) == ["truncated"]
    assert out.http.req.body_size == size
    assert out.http.req.body == b"b" * (256 << 10)
    assert out.http.res.status_code == 200


def test_iovecs_past_the_old_limit_of_32_are_copied() -> None:
    with nginx() as srv, live_capture(ports=[srv.port]) as lc:
        peer("many-iovecs", srv.port, L.NT_MAX_IOV + 20)
        lc.wait_for(2)
        lc.settle()
        s = lc.cap.summary()
    assert s["drop_iov_bytes"] == 0
    for p in (lc.outbound()[0], lc.inbound()[0]):
        assert p.http.req.body == b"v" * (L.NT_MAX_IOV + 20)
        assert not p.flags


def test_sendfile_bytes_are_counted_and_the_response_flagged() -> None:
    # the peer sends from an O_TMPFILE file: it has no path to read the bytes back from
    size = 50_000
    port = free_port()
    with live_capture(ports=[port]) as lc, peer_server("sendfile-server", port, size):
        assert len(curl(f"http://127.0.0.1:{port}/file")) == size
        lc.wait_for(2)
        s = lc.cap.summary()
    assert s["drop_sendfile_bytes"] == size
    server_side = lc.inbound()[0]
    assert "gap" in server_side.flags
    assert server_side.http.res.status_code == 200
    # the client read the body with recv(): its side is whole
    client_side = lc.outbound()[0]
    assert client_side.http.res.body == b"f" * size
    assert not client_side.flags


def test_sendmmsg_on_a_tracked_connection_is_counted() -> None:
    with nginx() as srv, live_capture(ports=[srv.port]) as lc:
        peer("sendmmsg", srv.port)
        lc.settle()
        s = lc.cap.summary()
    assert s["drop_mmsg_calls"] == 1
    assert s["gap_records"] >= 1


def test_read_fault_is_counted() -> None:
    port = free_port()
    with live_capture(ports=[port]) as lc, peer_server("readv-fault-server", port):
        peer("slow", port)  # sends only once the server's readv() is blocked
        lc.settle()
        s = lc.cap.summary()
    assert s["drop_read_fault_pieces"] >= 1
    assert flagged(lc, "gap") or s["stream_gap_bytes"] > 0


def test_full_connection_table_is_counted() -> None:
    with nginx() as srv, live_capture(ports=[srv.port], max_conns=4) as lc:
        peer("hold", srv.port, 10)
        lc.settle()
        s = lc.cap.summary()
    assert s["drop_conn_table_full"] > 0


def test_a_connection_that_is_not_http_stops_being_copied() -> None:
    with nginx() as srv, live_capture(ports=[srv.port]) as lc:
        peer("not-http", srv.port)
        peer("sequential", srv.port, 1)
        lc.wait_for(2, where=lambda p: p.http.req.url == "/x")
        lc.settle()
        s = lc.cap.summary()
    assert s["conns_not_http"] >= 1
    # the garbage never shows up as a request; nginx's 400 answer to it may (without one)
    assert all(p.http.req.url in ("/x", "") for p in lc.pairs)
    assert [p.http.req.method for p in lc.pairs if p.http.req.url == "/x"] == ["GET", "GET"]
