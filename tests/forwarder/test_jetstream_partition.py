"""A network partition of one NATS node, in network namespaces: three nats-server nodes, each
in its own namespace, joined through a hub namespace (which forwards between them and runs two
forwarders and an agent). One node is cut off (nft drop in the hub) mid-ingest: writes go on
(R3 keeps a quorum of two), then the partition heals; every RRPair is stored exactly once and
the other forwarder serves them all."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nodetap import jsonl
from nodetap.v1 import rrpair_pb2 as pb
from tests.forwarder.helpers import ROOT, finish_producer, producer_argv, read_until
from tests.support.lab import Lab, Netns
from tests.support.nats_cluster import NATS_SERVER

pytestmark = [pytest.mark.root, pytest.mark.netns, pytest.mark.slow]

CONF = """
server_name: n{i}
listen: {ip}:4222
http: {ip}:8222
jetstream {{ store_dir: "{store}", max_memory_store: 64MB, max_file_store: 1GB }}
cluster {{ name: part, listen: {ip}:6222, routes: [{routes}] }}
"""

COUNT_IDS = """
import json, sys
from forwarder import client
print(json.dumps([p.id for p in client.export_pairs(sys.argv[1])]))
"""

WAIT_PORT = """
import socket, sys, time
deadline = time.monotonic() + float(sys.argv[3])
while time.monotonic() < deadline:
    try:
        socket.create_connection((sys.argv[1], int(sys.argv[2])), 0.5).close()
        sys.exit(0)
    except OSError:
        time.sleep(0.05)
sys.exit(1)
"""


def _wait_port(lab: Lab, ns: Netns, host: str, port: int, timeout: float = 30) -> None:
    lab.run(ns, [sys.executable, "-c", WAIT_PORT, host, str(port), str(timeout)], timeout + 5)


def _ids(lab: Lab, hub: Netns, addr: str) -> list[str]:
    """The ids B exports; a read may fail (UNAVAILABLE) while B's NATS connection moves off
    the cut node, and a client retries it."""
    for _ in range(10):
        out = lab.run(hub, [sys.executable, "-c", COUNT_IDS, addr], timeout=60, check=False)
        if out.returncode == 0:
            return list(json.loads(out.stdout))
        time.sleep(1)
    raise AssertionError(f"export from {addr} keeps failing: {out.stderr.strip()[-300:]}")


def _meta_leader(lab: Lab, hub: Netns, ips: list[str]) -> str:
    for _ in range(300):
        for ip in ips:
            r = lab.run(hub, ["curl", "-s", "-m", "2", f"http://{ip}:8222/jsz"], check=False)
            if r.returncode == 0:
                leader = (json.loads(r.stdout).get("meta_cluster") or {}).get("leader")
                if leader:
                    return str(leader)
        time.sleep(0.1)
    raise AssertionError("no JetStream meta leader")


def test_partitioned_nats_node_then_healed_stores_each_pair_once(tmp_path: Path) -> None:
    n = 300
    src = tmp_path / "pairs.jsonl"
    with src.open("w") as fp:
        for i in range(1, n + 1):
            p = pb.RRPair(id=f"part-{i}", l7protocol="http", direction=pb.INBOUND)
            p.ts.FromNanoseconds(time.time_ns())
            p.meta.node, p.meta.namespace = "node-1", "shop"
            p.http.req.method, p.http.req.url = "GET", f"/part/{i}"
            jsonl.write(fp, p)
    with Lab() as lab:
        hub = lab.netns("hub")
        nodes = [lab.netns(f"nats{i}") for i in range(3)]
        links = [lab.link(hub, ns) for ns in nodes]  # a: hub side, b: node side
        lab.run(hub, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        for i, ns in enumerate(nodes):
            for j, other in enumerate(links):
                if j != i:
                    lab.route(ns, f"{other.b_ip}/32", via=links[i].a_ip)
        ips = [lk.b_ip for lk in links]
        for i, ns in enumerate(nodes):
            d = tmp_path / f"n{i}"
            (d / "store").mkdir(parents=True)
            routes = ", ".join(f"nats-route://{ip}:6222" for j, ip in enumerate(ips) if j != i)
            conf = CONF.format(i=i, ip=ips[i], store=d / "store", routes=routes)
            (d / "nats.conf").write_text(conf)
            lab.popen(
                ns,
                [NATS_SERVER, "-c", str(d / "nats.conf")],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        for ip in ips:
            _wait_port(lab, hub, ip, 4222)
        leader = _meta_leader(lab, hub, ips)
        store = "nats://" + ",".join(f"{ip}:4222" for ip in ips)
        addrs = []
        for port in (7071, 7072):  # inside the hub namespace: its own port space
            argv = [sys.executable, "-m", "cli", "forwarder", "--listen", f"127.0.0.1:{port}"]
            lab.popen(
                hub,
                [*argv, "--store", store],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            _wait_port(lab, hub, "127.0.0.1", port)
            addrs.append(f"127.0.0.1:{port}")
        a, b = addrs
        prod = lab.popen(
            hub,
            [*producer_argv(a, "--input", str(src), "--interval", "0.05", "--hold")],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        read_until(prod, f"put {n // 4}")
        stored_at_cut = len(_ids(lab, hub, b))
        cut = ips[int(leader.removeprefix("n"))]  # cut off the JetStream meta leader
        rules = f"""
table inet nodetap_part {{
    chain f {{
        type filter hook forward priority 0;
        ip saddr {cut} drop
        ip daddr {cut} drop
    }}
    chain o {{
        type filter hook output priority 0;
        ip daddr {cut} drop
    }}
}}"""
        (tmp_path / "part.nft").write_text(rules + "\n")
        lab.run(hub, ["nft", "-f", str(tmp_path / "part.nft")])
        read_until(prod, f"put {3 * n // 4}")
        during = len(_ids(lab, hub, b))
        assert during > stored_at_cut  # writes go on with one node cut off (R3 quorum)
        lab.run(hub, ["nft", "delete table inet nodetap_part"])  # heal
        assert read_until(prod, "FLUSHED", timeout=120) == "FLUSHED true"
        counters = finish_producer(prod)
        assert counters["acked"] == n
        ids = _ids(lab, hub, b)
        assert sorted(ids) == sorted(f"part-{i}" for i in range(1, n + 1))  # each exactly once
