"""Ring-buffer batches recorded from a live capture of nginx and curl (real peers) decode
to the same RRPairs in the Python path and in the core, byte for byte."""

from __future__ import annotations

import os
import subprocess

import pytest

from agent.ringbuf import RingBufferReader
from nodetap.v1 import rrpair_pb2 as pb
from tests.core.paths import assert_same
from tests.support.capture import live_capture
from tests.support.servers import nginx

pytestmark = [pytest.mark.bpf, pytest.mark.root]


def _curl(*args: str) -> None:
    subprocess.run(["curl", "-sS", "-o", "/dev/null", *args], check=True, timeout=30)


def test_recorded_nginx_batches_decode_alike() -> None:
    files = {"small.txt": b"hello\n", "big.bin": os.urandom(300_000)}
    batches: list[bytes] = []
    with nginx(files=files) as srv, live_capture(ports=[srv.port], preexisting=False) as lc:
        reader = lc.cap.reader
        assert isinstance(reader, RingBufferReader)
        read_extent = reader.read_extent

        def recording(max_bytes: int = 64 << 20) -> bytes | None:
            blob = read_extent(max_bytes)
            if blob is not None:
                batches.append(blob)
            return blob

        reader.read_extent = recording  # type: ignore[method-assign]
        url = srv.url
        # keep-alive: several requests on one connection, a HEAD, a 404, a big body
        _curl(
            url + "/small.txt",
            "-o",
            "/dev/null",
            url + "/big.bin",
            "-o",
            "/dev/null",
            url + "/missing",
        )
        _curl("-I", url + "/small.txt")
        _curl("--http1.0", url + "/small.txt")
        _curl("-d", "a=1&b=2", url + "/small.txt")
        _curl("-H", "Transfer-Encoding: chunked", "-d", "chunked body", url + "/small.txt")
        # each exchange seen by the server (nginx) and by the client (curl)
        lc.wait_for(14)
        lc.settle()
        live = list(lc.pairs)
    assert batches
    want = assert_same(batches)

    # the offline Python path saw what the live capture saw, connection by connection (live,
    # a connection whose addresses come after its close is parked a drain longer than
    # offline: the order between connections is not the decoders' to keep)
    def by_conn(pairs: list[pb.RRPair]) -> list[tuple[int, pb.HttpExchange]]:
        return sorted(((p.meta.conn_id, p.http) for p in pairs), key=lambda t: t[0])

    assert by_conn(want) == by_conn(live)
    assert {p.http.req.method for p in want} >= {"GET", "HEAD", "POST"}
    assert any(len(p.http.res.body) == 300_000 for p in want)
