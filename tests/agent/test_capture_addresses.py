"""Connections opened without addresses (accept without a sockaddr): their exchanges wait
for the NT_EV_ADDR record, the --port filter is decided then, and addresses that never
come leave the RRPairs without them, flagged ``noaddr``, never dropped and never wrong
(agent/capture_addresses.py, agent/addr_lookup.py). The record loop is fed records as the
programs write them, without BPF."""

from __future__ import annotations

import ipaddress
import os
import socket
import struct

import nodetap_core
import pytest

from agent import addr_lookup
from agent import bpf_layout as L
from agent.capture import CaptureConfig, SyscallCapture
from agent.capture_addresses import MAX_HELD
from nodetap.v1 import rrpair_pb2 as pb

TGID, FD, CID = 4242, 9, 77
REQ = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n"
RES = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def _ring(payload: bytes) -> bytes:
    return struct.pack("<II", len(payload), 0) + payload + bytes(-len(payload) % 8)


def _addr(ip: str) -> bytes:
    return bytes(10) + b"\xff\xff" + ipaddress.ip_address(ip).packed


def _conn_event(kind: int, lport: int = 0, rport: int = 0, family: int = 0) -> bytes:
    ip = "127.0.0.1" if lport else "0.0.0.0"
    return _ring(
        L.CONN_EVENT.pack(
            kind,
            L.NT_ROLE_SERVER,
            family,
            TGID,
            CID,
            1,
            FD,
            lport,
            rport,
            _addr(ip),
            _addr(ip),
            0,
            0,
            0,
            b"node".ljust(16, b"\0"),
        )
    )


class _Stream:
    def __init__(self) -> None:
        self.off = [0, 0]

    def data(self, d: int, payload: bytes) -> bytes:
        hdr = L.DATA_HDR.pack(L.NT_EV_DATA, d, 1, len(payload), CID, 2, self.off[d], TGID, FD)
        self.off[d] += len(payload)
        return _ring(hdr + payload)

    def exchange(self) -> bytes:
        return self.data(L.NT_DIR_INGRESS, REQ) + self.data(L.NT_DIR_EGRESS, RES)


def _run(
    ports: list[int], *batches: bytes, decoder: str = ""
) -> tuple[list[pb.RRPair], dict[str, int]]:
    out: list[pb.RRPair] = []
    cfg = CaptureConfig(ports=ports, node="n", preexisting=False)
    if decoder:
        cfg.decoder = decoder
    cap = SyscallCapture(cfg, emit=out.append)
    for blob in batches:
        cap.feed_batch(blob)
        cap._age_parked()
    cap._age_parked(force=True)
    return out, cap.stats


OPEN = _conn_event(L.NT_EV_OPEN)
ADDR = _conn_event(L.NT_EV_ADDR, 8080, 50000, 2)
CLOSE = _conn_event(L.NT_EV_CLOSE)


def test_addresses_reported_before_the_data_pass_the_port_filter() -> None:
    s = _Stream()
    pairs, stats = _run([8080], OPEN + ADDR + s.exchange() + CLOSE)
    assert [(p.client.port, p.server.port, list(p.flags)) for p in pairs] == [(50000, 8080, [])]
    assert stats["conns_noaddr"] == stats["conns_noaddr_resolved"] == 1


def test_a_connection_not_matching_the_port_filter_is_dropped_once_known() -> None:
    s = _Stream()
    pairs, stats = _run([9999], OPEN + ADDR + s.exchange() + CLOSE)
    assert pairs == [] and stats["conns_filtered_user"] == 1


def test_exchanges_wait_for_addresses_that_come_later() -> None:
    s = _Stream()
    pairs, _ = _run([8080], OPEN + s.exchange() + s.exchange(), ADDR + CLOSE)
    assert [(p.client.port, p.server.port) for p in pairs] == [(50000, 8080)] * 2


def test_addresses_that_never_come_leave_the_rrpairs_flagged_never_dropped() -> None:
    s = _Stream()
    pairs, stats = _run([9999], OPEN + s.exchange() + CLOSE)
    assert [(p.client.port, p.server.port, list(p.flags)) for p in pairs] == [(0, 0, ["noaddr"])]
    assert stats["conns_noaddr_unresolved"] == 1 and stats["rrpairs_noaddr"] == 1


@pytest.mark.parametrize(
    ("decoder", "bound"), [("python", MAX_HELD), ("core", nodetap_core.MAX_HELD)]
)
def test_held_exchanges_are_bounded(decoder: str, bound: int) -> None:
    s = _Stream()
    held = b"".join(s.exchange() for _ in range(bound + 1))
    pairs, stats = _run([8080], OPEN + held, ADDR + s.exchange() + CLOSE, decoder=decoder)
    assert len(pairs) == bound + 2
    assert all(list(p.flags) == ["noaddr"] and not p.client.port for p in pairs[:-1])
    assert (pairs[-1].client.port, list(pairs[-1].flags)) == (50000, [])
    assert stats["rrpairs_noaddr"] == bound + 1


def test_proc_is_believed_only_while_the_fd_provably_names_the_connection() -> None:
    ls = socket.create_server(("127.0.0.1", 0))
    c = socket.create_connection(ls.getsockname())
    s, peer = ls.accept()
    try:
        pid, fd = os.getpid(), s.fileno()
        sock = addr_lookup.verified_fd_sock(pid, fd, lambda: True)
        assert sock is not None
        assert (sock.local_port, sock.remote_port) == (ls.getsockname()[1], peer[1])
        assert addr_lookup.verified_fd_sock(pid, fd, lambda: False) is None
        answers = iter([True, False])  # the fd changed hands while /proc was read
        assert addr_lookup.verified_fd_sock(pid, fd, lambda: next(answers)) is None
        assert addr_lookup.verified_fd_sock(pid, ls.fileno(), lambda: True) is None  # listener
    finally:
        for x in (c, s, ls):
            x.close()
