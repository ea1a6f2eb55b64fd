"""The namespace lab: links carry IPv4 and IPv6 traffic, and nothing survives the block."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.support.lab import Lab
from tests.support.servers import wait_for_port

pytestmark = [pytest.mark.root, pytest.mark.netns]


def _names(cmd: list[str]) -> str:
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def test_lab_links_serve_traffic_and_leave_nothing() -> None:
    with Lab() as lab:
        cli, srv = lab.netns("cli"), lab.netns("srv")
        link = lab.link(cli, srv)
        host = lab.link(None, srv)
        lab.popen(
            srv,
            [sys.executable, "-m", "http.server", "--bind", "::", "18080"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for_port(host.b_ip, 18080)
        for url in (f"http://{link.b_ip}:18080/", f"http://[{link.b_ip6}]:18080/"):
            out = lab.run(cli, ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", url])
            assert out.stdout == "200"
        names = (cli.name, srv.name, host.a_dev)
        listing = _names(["ip", "netns", "list"]) + _names(["ip", "-o", "link"])
        assert all(n in listing for n in names)
    listing = _names(["ip", "netns", "list"]) + _names(["ip", "-o", "link"])
    assert not any(n in listing for n in names)


def test_clean_orphans_removes_only_namespaces_of_dead_creators() -> None:
    gone = subprocess.Popen(["true"])
    gone.wait()  # a PID that no longer exists (reuse this soon is unlikely)
    dead, alive = f"nt{gone.pid:x}-1-orphan", f"nt{os.getpid():x}-999-alive"
    try:
        for name in (dead, alive):
            subprocess.run(["ip", "netns", "add", name], check=True)
        removed = Lab.clean_orphans()
        listing = _names(["ip", "netns", "list"])
        assert dead in removed and dead not in listing
        assert alive not in removed and alive in listing
    finally:
        for name in (dead, alive):
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
