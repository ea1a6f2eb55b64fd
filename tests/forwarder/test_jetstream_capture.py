"""A real `nodetap capture --forwarder A` of real nginx traffic, A and B on one real 3-node
JetStream cluster, one NATS node SIGKILLed mid-capture: B's export holds every request
exactly once (inbound and outbound), and B's live Subscribe saw them as they arrived."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest

from forwarder import client
from nodetap.v1 import forwarder_pb2 as fpb
from tests.forwarder.helpers import start_capture, stop
from tests.support.nats_cluster import nats_cluster, start_nats_forwarder
from tests.support.servers import free_port, nginx

pytestmark = [pytest.mark.bpf, pytest.mark.root, pytest.mark.slow]

CLIENT = """
import sys, time, urllib.request
url, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    with urllib.request.urlopen(f"{url}/hello?i={i}", timeout=10) as r:
        r.read()
    print(i + 1, flush=True)
    time.sleep(0.01)
"""


def test_capture_into_jetstream_survives_a_nats_node_kill(tmp_path: Path) -> None:
    n = 60
    with nats_cluster(3) as cluster, nginx() as web:
        pa, pb_ = free_port(), free_port()
        fa = start_nats_forwarder(pa, cluster.url)
        fb = start_nats_forwarder(pb_, cluster.url)
        a, b = f"127.0.0.1:{pa}", f"127.0.0.1:{pb_}"
        seen: list[str] = []
        ch = grpc.insecure_channel(b)
        call = client.stub(ch).Subscribe(fpb.SubscribeRequest())
        call.initial_metadata()

        def tail() -> None:
            with contextlib.suppress(grpc.RpcError):
                for p in call:
                    seen.append(p.http.req.url)

        threading.Thread(target=tail, daemon=True).start()
        cap = start_capture(
            "--port",
            str(web.port),
            "--count",
            str(2 * n),
            "--forwarder",
            a,
            "--spool-dir",
            str(tmp_path / "spool"),
            "-o",
            str(tmp_path / "local.jsonl"),
        )
        cli = None
        try:
            assert cap.stderr is not None
            cli = subprocess.Popen(
                [sys.executable, "-c", CLIENT, web.url, str(n)], stdout=subprocess.PIPE, text=True
            )
            assert cli.stdout is not None
            while int(cli.stdout.readline() or n) < n // 3:
                pass
            cluster.kill(1)  # SIGKILL one NATS node mid-capture
            cli.wait(timeout=60)
            cap.wait(timeout=90)
            summary = cap.stderr.read()
            assert cap.returncode == 0, summary
            urls = sorted(p.http.req.url for p in client.export_pairs(b))
            want = sorted(f"/hello?i={i}" for i in range(n) for _ in (0, 1))
            assert urls == want  # inbound and outbound of each request, exactly once, via B
            deadline = time.monotonic() + 20
            while len(seen) < 2 * n and time.monotonic() < deadline:
                time.sleep(0.1)
            assert sorted(seen) == want  # B's live tail saw what A ingested
        finally:
            call.cancel()
            ch.close()
            if cli is not None:
                stop(cli)
            stop(cap, signal.SIGINT)
            stop(fa)
            stop(fb)
        assert len(web.access_log_lines()) == n
