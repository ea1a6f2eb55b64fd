"""Conntrack pressure, the throttle, NOTRACK and stale entries, in network namespaces."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netsetup import conntrack, rules
from nodetap.errors import NodetapError
from replay.plan import Plan
from replay.report import table
from replay.runner import run_replay
from tests.replay.helpers import record
from tests.support.lab import Lab, Link, Netns
from tests.support.servers import free_port, wait_for_port

pytestmark = [pytest.mark.root, pytest.mark.netns]
ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / "tests" / "replay" / "recording_server.py"
CT_MAX = "/proc/sys/net/netfilter/nf_conntrack_max"


@contextlib.contextmanager
def conntrack_max(value: int) -> Iterator[None]:
    """Lower the global nf_conntrack_max; always restored."""
    old = Path(CT_MAX).read_text().strip()
    try:
        Path(CT_MAX).write_text(str(value))
        yield
    finally:
        Path(CT_MAX).write_text(old)


def _setup(lab: Lab, tmp: Path, ports: tuple[int, ...] = (8080,)) -> tuple[Netns, Netns, Link]:
    cli, srv = lab.netns("cli"), lab.netns("srv")
    link = lab.link(cli, srv)
    lab.enable_conntrack(cli)
    for port in ports:
        lab.popen(srv, [sys.executable, str(SERVER), "::", str(port), str(tmp / f"srv{port}.log")])
    for port in ports:
        code = f"from tests.support.servers import wait_for_port as w; w('{link.b_ip}', {port})"
        lab.run(cli, [sys.executable, "-c", code])
        conntrack.flush_stale(link.b_ip, port, cli.name)  # the readiness probe's entry
    return cli, srv, link


def _close_capture(tmp: Path, n: int) -> Path:
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(SERVER), "127.0.0.1", str(port), "/dev/null"])
    try:
        wait_for_port("127.0.0.1", port)
        cap = tmp / "close.jsonl"
        record("127.0.0.1", port, [("GET", f"/c/{i}", [], b"") for i in range(n)], cap, close=True)
        return cap
    finally:
        proc.terminate()
        proc.wait()


def _drain(ns: str) -> None:
    """Wait (bounded) until the namespace's table is nearly empty, reaping expired entries."""
    with conntrack.Monitor(ns) as mon:
        for _ in range(100):
            mon.reap()
            if mon.sample().count < 5:
                return
            time.sleep(0.2)


def test_throttle_keeps_kernel_counters_flat(tmp_path: Path) -> None:
    with Lab() as lab:
        cli, _, link = _setup(lab, tmp_path)
        # Entries leave TIME_WAIT after 2 s in this namespace, so the table drains between runs.
        lab.run(cli, ["sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_timeout_time_wait=2"])
        cap = _close_capture(tmp_path, 200)
        target = f"http://{link.b_ip}:8080"

        def plan(throttle: bool) -> Plan:
            return Plan(
                capture=str(cap),
                target=target,
                connection="close",
                vusers=16,
                netns=cli.name,
                conntrack_throttle=throttle,
                timeout=3 if not throttle else 10,
            )

        with conntrack_max(120):
            # Throttled first (the table starts empty), then unthrottled.
            tamed = run_replay(plan(True), progress=False)
            print(table(tamed))
            wild = run_replay(plan(False), progress=False)
            print(table(wild))
            _drain(cli.name)
            # Recorded as closing, replayed as recorded: under pressure connections stay open.
            reuse = plan(True)
            reuse.connection = "as-recorded"
            kept = run_replay(reuse, progress=False)
            print(table(kept))
    w, t = wild["conntrack"], tamed["conntrack"]
    kernel = w["delta"]["insert_failed"] + w["delta"]["drop"] + w["delta"]["early_drop"]
    assert kernel > 0 or wild["errors"]["total"] > 0 or w["throttle"]["slow_connects"] > 0
    assert w["peak_count"] >= 110
    assert t["delta"] == {
        "insert_failed": 0,
        "drop": 0,
        "early_drop": 0,
        "search_restart": t["delta"]["search_restart"],
    }
    assert tamed["errors"]["total"] == 0 and tamed["requests"]["responses"] == 200
    assert t["throttle"]["throttled_s"] > 0 and t["throttle"]["delayed_connections"] > 0
    assert t["peak_count"] <= 120
    assert "held back" in table(tamed)
    k = kept["conntrack"]
    assert k["delta"]["drop"] == 0 and kept["errors"]["total"] == 0
    assert k["throttle"]["kept_open_under_pressure"] > 0 and kept["connections"]["reused"] > 0


@pytest.mark.parametrize("backend", ["nft", "legacy"])
def test_notrack_keeps_table_empty(tmp_path: Path, backend: str) -> None:
    with Lab() as lab:
        cli, _, link = _setup(lab, tmp_path)
        cap = _close_capture(tmp_path, 40)
        target = f"http://{link.b_ip}:8080"
        tracked = run_replay(
            Plan(capture=str(cap), target=target, connection="close", netns=cli.name),
            progress=False,
        )
        assert len(conntrack.find_stale(link.b_ip, 8080, cli.name)) == 40
        conntrack.flush_stale(link.b_ip, 8080, cli.name)
        rs = rules.NetfilterRuleSet(
            [rules.NotrackRule(link.b_ip, 8080)], netns=cli.name, backend=backend
        )
        with rs:
            assert {r.backend for r in rules.status(cli.name)} == {backend}
            untracked = run_replay(
                Plan(capture=str(cap), target=target, connection="close", netns=cli.name),
                progress=False,
            )
            assert conntrack.entries(cli.name) == []
        assert rules.status(cli.name) == []
    assert tracked["conntrack"]["peak_count"] > 0
    assert untracked["conntrack"]["peak_count"] == 0
    assert untracked["requests"]["responses"] == 40 and untracked["errors"]["total"] == 0


def _dnat(lab: Lab, ns: Netns, vip: str, to: str) -> None:
    """A Service-like rule in ns: TCP to vip:80 goes to `to` (DNAT in nat OUTPUT)."""
    lab.run(
        ns,
        ["iptables", "-t", "nat", "-A", "OUTPUT", "-d", vip, "-p", "tcp", "--dport", "80"]
        + ["-j", "DNAT", "--to-destination", to],
    )


def test_notrack_refused_for_nat_target(tmp_path: Path) -> None:
    with Lab() as lab:
        cli, _, link = _setup(lab, tmp_path)
        vip = "192.0.2.10"
        _dnat(lab, cli, vip, f"{link.b_ip}:8080")
        with pytest.raises(NodetapError, match="NATed"):
            rules.notrack_for_target(vip, 80, cli.name)
        assert rules.status(cli.name) == []


def _curl(lab: Lab, ns: Netns, url: str, n: int) -> None:
    for _ in range(n):
        lab.run(ns, ["curl", "-s", "-o", "/dev/null", "--max-time", "5", url])


def test_flush_stale_removes_exactly_earlier_runs_entries(tmp_path: Path) -> None:
    with Lab() as lab:
        cli, _, link = _setup(lab, tmp_path, ports=(8080, 8081))
        vip = "192.0.2.20"
        lab.route(cli, "192.0.2.0/24", link.b_ip)
        _dnat(lab, cli, vip, f"{link.b_ip}:8080")
        _curl(lab, cli, f"http://{link.b_ip}:8080/direct", 5)
        _curl(lab, cli, f"http://{vip}/via-service", 3)
        _curl(lab, cli, f"http://[{link.b_ip6}]:8080/v6", 2)
        _curl(lab, cli, f"http://{link.b_ip}:8081/other-port", 2)
        # A live connection to the target: not stale, must survive.
        holder = lab.popen(
            cli,
            [
                sys.executable,
                "-c",
                "import socket,sys,time;"
                f"s=socket.create_connection(('{link.b_ip}',8080));"
                "print('up',flush=True);time.sleep(60)",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert holder.stdout is not None and holder.stdout.readline().strip() == "up"
        before = conntrack.entries(cli.name)
        stale4 = conntrack.find_stale(link.b_ip, 8080, cli.name)
        assert len(stale4) == 8
        assert sum(e.orig_dst == vip for e in stale4) == 3
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "cli",
                "netsetup",
                "--netns",
                cli.name,
                "stale",
                f"{link.b_ip}:8080",
                "--flush",
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
        assert out.returncode == 0 and "deleted 8 stale entries" in out.stdout, out.stderr
        after = conntrack.entries(cli.name)
        assert set(before) - set(after) == set(stale4)
        assert sum(e.orig_dport == 8081 for e in after) == 2
        assert any(e.state == "ESTABLISHED" and e.orig_dport == 8080 for e in after)
        stale6 = conntrack.flush_stale(link.b_ip6, 8080, cli.name)
        assert len(stale6) == 2 and all(e.family == socket.AF_INET6 for e in stale6)
        assert conntrack.find_stale(link.b_ip6, 8080, cli.name) == []


def test_preflight_warns_when_the_plan_exceeds_the_ceiling() -> None:
    with Lab() as lab:
        ns = lab.netns("pf")
        lab.enable_conntrack(ns)
        lab.run(ns, ["sysctl", "-qw", "net.netfilter.nf_conntrack_tcp_timeout_time_wait=30"])
        calm = conntrack.preflight(ns.name, planned_new_per_s=10)
        busy = conntrack.preflight(ns.name, planned_new_per_s=1e7)
    assert calm.time_wait_s == 30 and calm.warnings == []
    assert calm.ceiling_new_per_s == pytest.approx(int(calm.max * 0.8) / 30, rel=0.01)
    assert len(busy.warnings) == 2 and "conntrack ceiling" in busy.warnings[0]
    assert any("ceiling on new connections" in line for line in busy.lines())
