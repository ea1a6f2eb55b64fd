"""Reading the node's netfilter state through the libraries: back-end detection and the NAT
check on both back ends (legacy through libiptc, nf_tables through its JSON API), and a
namespace that does not exist is an error, never created."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from netsetup.backend_detect import detect_backend
from netsetup.nat_check import target_needs_nat
from netsetup.netns import in_netns
from tests.support.lab import Lab, Netns

pytestmark = [pytest.mark.root, pytest.mark.netns]
ROOT = Path(__file__).resolve().parents[2]


def _nat_rules(lab: Lab, ns: Netns) -> None:
    dnat = ["-p", "tcp", "--dport", "80", "-j", "DNAT", "--to-destination"]
    lab.run(
        ns,
        ["iptables-legacy", "-t", "nat", "-A", "OUTPUT", "-d", "192.0.2.10", *dnat, "10.1.1.1:80"],
    )
    # python-iptables cannot decode this target: the destination is read from libiptc's entry.
    lab.run(
        ns,
        ["ip6tables-legacy", "-t", "nat", "-A", "OUTPUT", "-d", "fd00::1", *dnat, "[fd00::2]:80"],
    )
    # A source match in a NAT chain (masquerading a pod's traffic) says nothing of traffic to it.
    lab.run(
        ns,
        ["iptables-legacy", "-t", "nat", "-A", "POSTROUTING", "-s", "10.1.1.1", "-j", "MASQUERADE"],
    )
    lab.run(ns, ["nft", "add table inet svc"])
    lab.run(ns, ["nft", "add chain inet svc out { type nat hook output priority 0; }"])
    lab.run(ns, ["nft", "add rule inet svc out ip6 daddr { fd00::7, fd00::8 } dnat ip6 to fd00::9"])
    lab.run(ns, ["nft", "add rule inet svc out ip daddr 192.0.2.20 dnat ip to 10.1.1.2"])


def test_nat_check_reads_both_backends() -> None:
    with Lab() as lab:
        ns = lab.netns("nat")
        _nat_rules(lab, ns)
        natted = ("192.0.2.10", "fd00::1", "fd00::8", "192.0.2.20")
        direct = ("192.0.2.11", "10.1.1.1", "fd00::2", "fd00::9", "10.1.1.2")
        assert all(target_needs_nat(ip, 80, ns.name) for ip in natted)
        assert not any(target_needs_nat(ip, 80, ns.name) for ip in direct)


def test_backend_detected_from_the_rules_present(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NODETAP_IPTABLES", raising=False)
    accept = ["-A", "OUTPUT", "-p", "tcp", "--dport"]
    with Lab() as lab:
        legacy, nft = lab.netns("legacy"), lab.netns("nft")
        for port in ("1", "2"):
            lab.run(legacy, ["iptables-legacy", *accept, port, "-j", "ACCEPT"])
        lab.run(nft, ["iptables-legacy", *accept, "1", "-j", "ACCEPT"])
        for port in ("1", "2"):
            lab.run(nft, ["iptables-nft", *accept, port, "-j", "ACCEPT"])
        assert in_netns(legacy.name, detect_backend) == "legacy"
        assert in_netns(nft.name, detect_backend) == "nft"
    monkeypatch.setenv("NODETAP_IPTABLES", "legacy")
    assert detect_backend() == "legacy"


@pytest.mark.parametrize("verb", ["status", "conntrack", "backend"])
def test_a_missing_namespace_is_an_error_not_created(verb: str) -> None:
    name = "nt-no-such-namespace"
    out = subprocess.run(
        [sys.executable, "-m", "cli", "netsetup", "--netns", name, verb],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert out.returncode == 2 and "does not exist" in out.stderr, out.stderr
    assert not Path("/run/netns", name).exists()
