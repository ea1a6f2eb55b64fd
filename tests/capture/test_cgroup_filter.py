"""The in-kernel cgroup filter (what Kubernetes targeting drives): two servers in two
cgroup v2 groups standing for two pods, one targeted. Only its traffic is captured; the
other's connections never enter the kernel's table, so they cost no events."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from agent import procfs
from tests.support.capture import live_capture
from tests.support.servers import free_port, wait_for_port

pytestmark = [pytest.mark.bpf, pytest.mark.root]

REPO = Path(__file__).resolve().parents[2]


@contextmanager
def server_in_cgroup(name: str) -> Iterator[tuple[int, int]]:
    """A Python echo server whose process lives in <cgroup2>/<name>; yields (port, cgroup id)."""
    mount = procfs.cgroup2_mount()
    if mount is None:
        pytest.fail("cgroup v2 is not mounted on this host")
    group = Path(mount) / name
    group.mkdir()
    port = free_port()
    code = (
        "import http.server;from tests.support.servers import _EchoHandler;"
        f"http.server.ThreadingHTTPServer(('127.0.0.1',{port}),_EchoHandler).serve_forever()"
    )
    procs_file = group / "cgroup.procs"

    def join() -> None:
        procs_file.write_text(str(os.getpid()))

    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, preexec_fn=join)
    try:
        wait_for_port("127.0.0.1", port)
        yield port, group.stat().st_ino
    finally:
        proc.kill()
        proc.wait()
        group.rmdir()


def test_only_the_targeted_cgroup_is_captured() -> None:
    tag = f"nodetap-test-{os.getpid()}"
    with (
        server_in_cgroup(tag + "-a") as (port_a, cg_a),
        server_in_cgroup(tag + "-b") as (
            port_b,
            _cg_b,
        ),
        live_capture(cgroup_ids=[cg_a]) as lc,
    ):
        for port in (port_a, port_b, port_a):
            subprocess.run(
                ["curl", "-s", f"http://127.0.0.1:{port}/bytes/100"], check=True, timeout=30
            )
        lc.wait_for(2)
        lc.settle()
        s = lc.cap.summary()
    assert {p.server.port for p in lc.pairs} == {port_a}
    assert len(lc.pairs) == 2
    assert all(p.direction == 1 for p in lc.pairs)  # INBOUND: curl is not in the group
    # B's connection and the three curl connections were refused at accept/connect time
    assert s["conns_opened"] == 2
    assert s["conns_filtered"] >= 4
    # every data record belongs to A's two connections (one read, two writes each)
    assert s["conns_tracked"] == 2
    assert s["data_records"] == 6


def test_a_filter_with_no_cgroup_yet_takes_nothing_until_a_cgroup_is_targeted() -> None:
    """Kubernetes targeting before any pod is targeted (agent/pipeline.py sets
    cgroup_filter): a connection open before the start is not adopted and a new one is not
    taken; once the server's cgroup is targeted, new connections are."""
    tag = f"nodetap-test-{os.getpid()}"
    with server_in_cgroup(tag + "-c") as (port, cg):
        early = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            early.request("GET", "/bytes/10")
            assert len(early.getresponse().read()) == 10
            with live_capture(cgroup_filter=True) as lc:
                early.request("GET", "/bytes/20")  # open before the capture: not adopted
                early.getresponse().read()
                _curl(port, 30)  # new, in a cgroup not targeted yet
                lc.settle()
                assert lc.pairs == []
                lc.cap.set_cgroup_filter([cg])
                _curl(port, 40)
                lc.wait_for(1)
                lc.settle()
                s = lc.cap.summary()
        finally:
            early.close()
    assert [len(p.http.res.body) for p in lc.pairs] == [40]
    assert s["conns_preexisting"] == 0


def _curl(port: int, n: int) -> None:
    subprocess.run(["curl", "-s", f"http://127.0.0.1:{port}/bytes/{n}"], check=True, timeout=30)
