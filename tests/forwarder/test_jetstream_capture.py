"""A real `nodetap capture --forwarder A` of real nginx traffic, A and B on one real 3-node
JetStream cluster, one NATS node SIGKILLed mid-capture: B's export holds every request
exactly once (inbound and outbound), and B's live Subscribe saw them as they arrived."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.forwarder.helpers import CountedClient, capture_to_forwarder, stop
from tests.forwarder.nats_forwarders import LiveTail, export_after_failover, forwarders
from tests.support.nats_cluster import nats_cluster
from tests.support.servers import nginx

pytestmark = [pytest.mark.bpf, pytest.mark.root, pytest.mark.slow]


def test_capture_into_jetstream_survives_a_nats_node_kill(tmp_path: Path) -> None:
    n = 60
    with nats_cluster(3) as cluster, forwarders(cluster, 2) as (a, b), nginx() as web:
        tail = LiveTail(b, lambda p: p.http.req.url)
        cap = capture_to_forwarder(web.port, 2 * n, a, tmp_path)
        cli = None
        try:
            assert cap.stderr is not None
            cli = CountedClient(web.url, n)
            cli.wait_for(n // 3)
            cluster.kill(1)  # SIGKILL one NATS node mid-capture
            cli.wait(timeout=60)
            cap.wait(timeout=90)
            summary = cap.stderr.read()
            assert cap.returncode == 0, summary
            urls = sorted(p.http.req.url for p in export_after_failover(b))
            want = sorted(f"/hello?i={i}" for i in range(n) for _ in (0, 1))
            assert urls == want  # inbound and outbound of each request, exactly once, via B
            assert tail.wait_count(2 * n, 20) == want  # B's live tail saw what A ingested
        finally:
            tail.close()
            if cli is not None:
                cli.stop()
            stop(cap, signal.SIGINT)
        assert len(web.access_log_lines()) == n
