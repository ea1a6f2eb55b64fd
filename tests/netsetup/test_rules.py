"""nodetap's rule sets: idempotent, listed, and cleaned after a SIGKILL without touching
anything that is not nodetap's, on both iptables back ends."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netsetup import rules
from netsetup.netns import in_netns
from tests.replay.helpers import record
from tests.support.lab import Lab, Netns
from tests.support.servers import free_port, wait_for_port

pytestmark = [pytest.mark.root, pytest.mark.netns]
ROOT = Path(__file__).resolve().parents[2]
SERVER = ROOT / "tests" / "replay" / "recording_server.py"


def _foreign(lab: Lab, ns: Netns) -> None:
    """Rules of someone else, some looking like nodetap's."""
    lab.run(ns, ["nft", "add table inet foreign"])
    lab.run(ns, ["nft", "add chain inet foreign out { type filter hook output priority 0; }"])
    lab.run(ns, ["nft", 'add rule inet foreign out tcp dport 9999 counter comment "foreign"'])
    lab.run(
        ns,
        [
            "iptables",
            "-t",
            "raw",
            "-A",
            "OUTPUT",
            "-p",
            "tcp",
            "--dport",
            "9998",
            "-m",
            "comment",
            "--comment",
            "nodetap",
            "-j",
            "CT",
            "--notrack",
        ],
    )
    lab.run(
        ns,
        [
            "iptables-legacy",
            "-t",
            "raw",
            "-A",
            "OUTPUT",
            "-p",
            "tcp",
            "--dport",
            "9997",
            "-m",
            "comment",
            "--comment",
            "nodetap:someone-else",
            "-j",
            "CT",
            "--notrack",
        ],
    )


def _foreign_intact(lab: Lab, ns: Netns) -> bool:
    nft = lab.run(ns, ["nft", "list", "table", "inet", "foreign"]).stdout
    ipt = lab.run(ns, ["iptables", "-t", "raw", "-S", "OUTPUT"]).stdout
    leg = lab.run(ns, ["iptables-legacy", "-t", "raw", "-S", "OUTPUT"]).stdout
    return 'comment "foreign"' in nft and "9998" in ipt and "9997" in leg


@pytest.mark.parametrize("backend", ["nft", "legacy"])
def test_apply_is_idempotent_and_listed(backend: str) -> None:
    with Lab() as lab:
        ns = lab.netns("r")
        _foreign(lab, ns)
        want = [rules.NotrackRule("10.9.9.9", 80), rules.NotrackRule("fd00::9", 8080)]
        rs = rules.NetfilterRuleSet(want, owner="test", netns=ns.name, backend=backend)
        rs.apply()
        rs.apply()
        st = rules.status(ns.name)
        assert len(st) == 4 and {r.comment for r in st} == {f"nodetap:test:{os.getpid()}"}
        assert {r.backend for r in st} == {backend}
        out = subprocess.run(
            [sys.executable, "-m", "cli", "netsetup", "--netns", ns.name, "status"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=True,
        )
        assert out.stdout.count(f"nodetap:test:{os.getpid()}") == 4
        # The owner is alive: clean leaves its rules.
        assert rules.clean(ns.name) == []
        assert rs.remove() == 4 and rules.status(ns.name) == []
        assert _foreign_intact(lab, ns)


@pytest.mark.parametrize("backend", ["nft", "legacy"])
def test_clean_after_sigkill_removes_only_nodetap_rules(tmp_path: Path, backend: str) -> None:
    port = free_port()
    rec = subprocess.Popen([sys.executable, str(SERVER), "127.0.0.1", str(port), "/dev/null"])
    try:
        wait_for_port("127.0.0.1", port)
        cap = tmp_path / "cap.jsonl"
        record("127.0.0.1", port, [("GET", "/k", [], b"")] * 5, cap)
    finally:
        rec.terminate()
        rec.wait()
    with Lab() as lab:
        cli, srv = lab.netns("cli"), lab.netns("srv")
        link = lab.link(cli, srv)
        lab.popen(srv, [sys.executable, str(SERVER), "::", "8080", "/dev/null"])
        _foreign(lab, cli)
        env = dict(os.environ, NODETAP_IPTABLES=backend)
        agent = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cli",
                "replay",
                str(cap),
                "--target",
                f"http://{link.b_ip}:8080",
                "--notrack",
                "--netns",
                cli.name,
                "--rate",
                "20/s",
                "--loop",
                "--duration",
                "60",
                "--no-progress",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 30
            while len(rules.status(cli.name)) < 2 and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(0.5)
        finally:
            agent.send_signal(signal.SIGKILL)
            agent.wait()
        left = rules.status(cli.name)
        assert len(left) == 2 and {r.backend for r in left} == {backend}
        assert {r.owner for r in left} == {("replay", agent.pid)}
        out = subprocess.run(
            [sys.executable, "-m", "cli", "netsetup", "--netns", cli.name, "clean"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
        assert out.returncode == 0 and out.stdout.count("removed rule") == 2, out.stderr
        assert rules.status(cli.name) == []
        assert _foreign_intact(lab, cli)


def test_clean_removes_nodetap_pins_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from netsetup import owned

    (tmp_path / "nodetap-maps").mkdir()
    (tmp_path / "nodetap-maps" / "conns").write_text("")
    (tmp_path / "nodetap_prog").write_text("")
    (tmp_path / "cilium-maps").mkdir()
    monkeypatch.setattr(owned, "BPF_FS", tmp_path)
    assert owned.status().pins == [str(tmp_path / "nodetap-maps"), str(tmp_path / "nodetap_prog")]
    gone = owned.clean(all_owners=True)
    assert len(gone.pins) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cilium-maps"]


def _attach_tc(dev: str) -> None:
    """In the namespace: clsact on dev, BPF filters named nodetap_cls (ingress, egress) and
    other_cls (someone else's, ingress)."""
    from bcc import BPF
    from pyroute2 import IPRoute

    b = BPF(
        text="int nodetap_cls(struct __sk_buff *skb) { return 0; }\n"
        "int other_cls(struct __sk_buff *skb) { return 0; }"
    )
    with IPRoute() as ipr:
        idx = ipr.link_lookup(ifname=dev)[0]
        ipr.tc("add", "clsact", idx)
        for name, parent, prio in (
            ("nodetap_cls", "ffff:fff2", 1),
            ("other_cls", "ffff:fff2", 2),
            ("nodetap_cls", "ffff:fff3", 1),
        ):
            fn = b.load_func(name, BPF.SCHED_CLS)
            ipr.tc(
                "add-filter",
                "bpf",
                idx,
                ":1",
                fd=fn.fd,
                name=fn.name,
                parent=parent,
                classid=1,
                direct_action=True,
                prio=prio,
            )


@pytest.mark.bpf
def test_clean_removes_nodetap_tc_filters_only() -> None:
    from netsetup import owned

    with Lab() as lab:
        a, b = lab.netns("a"), lab.netns("b")
        link = lab.link(a, b)
        in_netns(a.name, _attach_tc, link.a_dev)
        found = owned.status(a.name).tc
        assert sorted((t.parent, t.name) for t in found) == [
            ("egress", "nodetap_cls"),
            ("ingress", "nodetap_cls"),
        ]
        out = subprocess.run(
            [sys.executable, "-m", "cli", "netsetup", "--netns", a.name, "clean", "--all"],
            capture_output=True,
            text=True,
            cwd=ROOT,
        )
        assert out.returncode == 0 and out.stdout.count("removed tc filter") == 2, out.stderr
        assert owned.status(a.name).tc == []
        left = lab.run(a, ["tc", "filter", "show", "dev", link.a_dev, "ingress"]).stdout
        assert "other_cls" in left and "nodetap_cls" not in left
