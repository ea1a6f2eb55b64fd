"""The smallest end-to-end check: one real exchange, seen from both sides."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nodetap.v1 import rrpair_pb2 as pb
from tests.support.capture import live_capture
from tests.support.servers import nginx

pytestmark = [pytest.mark.bpf, pytest.mark.root]

CLIENT = """
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
    sys.stdout.buffer.write(r.read())
"""


@pytest.mark.parametrize("typed_regs", [True, False], ids=["typed-registers", "probe-reads"])
def test_one_get_seen_by_server_and_client(typed_regs: bool) -> None:
    """Both ways of reading the syscall registers (bpf/common.h): the typed one this
    kind of machine uses, and the probe reads of kernels without BTF."""
    with nginx() as srv, live_capture(ports=[srv.port], typed_regs=typed_regs) as lc:
        # the client is another process: the capture never traces its own process
        out = subprocess.run(
            [sys.executable, "-c", CLIENT, srv.url + "/hello?x=1"],
            capture_output=True,
            check=True,
            timeout=30,
        ).stdout
        assert out == b"hello world\n"
        pairs = lc.wait_for(2)
        workers = srv.worker_pids
        assert lc.cap.probes is not None and lc.cap.probes.typed_regs is typed_regs
    inbound = [p for p in pairs if p.direction == pb.INBOUND]
    outbound = [p for p in pairs if p.direction == pb.OUTBOUND]
    assert len(inbound) == 1 and len(outbound) == 1
    for p in pairs:
        assert p.l7protocol == "http"
        assert p.http.req.method == "GET"
        assert p.http.req.url == "/hello?x=1"
        assert p.http.res.status_code == 200
        assert p.http.res.body == b"hello world\n"
        assert p.server.port == srv.port
        assert p.server.ip == "127.0.0.1"
        assert p.client.port == outbound[0].client.port != 0
        assert list(p.flags) == []
        assert p.duration_us >= p.ttfb_us >= 0
    assert inbound[0].meta.comm == "nginx"
    assert inbound[0].meta.pid in workers
    assert outbound[0].meta.comm.startswith("python")
    # both sides saw the same request headers, in the same order
    sent = [(h.name, h.value) for h in outbound[0].http.req.headers]
    assert sent == [(h.name, h.value) for h in inbound[0].http.req.headers]
    assert [n for n, _ in sent][:2] == ["Accept-Encoding", "Host"]
    assert lc.cap.summary()["drop_ringbuf_data_records"] == 0
