"""A network-namespace lab for tests: namespaces, veth links with addresses, processes inside.

Everything a lab creates is removed when its ``with`` block ends, even when the block raises:
processes started in it are killed by PID, namespaces deleted (which removes their veth ends,
their iptables/nft rules and their conntrack tables), host-side veth ends deleted.
Namespaces, links, addresses and routes are made over netlink (pyroute2); programs run inside
a namespace through `ip netns exec`.

API::

    from tests.support.lab import Lab

    with Lab() as lab:
        srv = lab.netns("srv")                 # a namespace named nt<pid>-<n>-srv, lo up
        cli = lab.netns("cli")
        link = lab.link(cli, srv)              # veth cli<->srv: 10.x.y.1/30 <-> 10.x.y.2/30,
        #                                        fd6e:74xx:...::1/64 <-> ::2/64 (no DAD delay)
        host = lab.link(None, srv)             # None = the host (root) namespace
        proc = lab.popen(srv, ["nginx", ...])  # subprocess.Popen inside srv; killed at exit
        out = lab.run(cli, ["curl", "-s", f"http://{link.b_ip}/"])  # CompletedProcess (text)
        lab.enable_conntrack(srv)              # a conntrack-using rule, so the ns tracks flows
        link.a_ip, link.b_ip, link.a_ip6, link.b_ip6, link.a_dev, link.b_dev

Namespaces are named ``nt<pid hex>-<n>-<tag>``; ``Lab.clean_orphans()`` removes those left by
processes that no longer exist (a test run killed with SIGKILL).
"""

from __future__ import annotations

import contextlib
import ipaddress
import itertools
import logging
import os
import re
import signal
import socket
import subprocess
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from pyroute2 import IPRoute
from pyroute2 import netns as pyroute2_netns
from pyroute2.netlink.exceptions import NetlinkError

log = logging.getLogger(__name__)

_counter = itertools.count(1)
_NAME_RE = re.compile(r"^nt([0-9a-f]+)-\d+-")
IFA_F_NODAD = 0x02  # linux/if_addr.h: no duplicate address detection (the address is usable now)


def _ipr(ns: str | None) -> IPRoute:
    """An rtnetlink socket in ns (None = the host namespace)."""
    return IPRoute(netns=ns, flags=0) if ns else IPRoute()


def _index(ipr: IPRoute, dev: str) -> int:
    return int(ipr.link_lookup(ifname=dev)[0])


def _del_link(dev: str) -> None:
    with _ipr(None) as ipr, contextlib.suppress(NetlinkError, IndexError):
        ipr.link("del", index=_index(ipr, dev))


def _del_netns(name: str) -> None:
    with contextlib.suppress(OSError):
        pyroute2_netns.remove(name)


@dataclass(frozen=True, slots=True)
class Netns:
    """A network namespace made by a Lab."""

    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True, slots=True)
class Link:
    """A veth pair between side a and side b (None = the host namespace)."""

    a: Netns | None
    b: Netns | None
    a_dev: str
    b_dev: str
    a_ip: str
    b_ip: str
    a_ip6: str
    b_ip6: str
    prefix: int = 30
    prefix6: int = 64


@dataclass
class Lab:
    """Creates namespaces and links; removes all of it on exit."""

    namespaces: list[Netns] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    procs: list[subprocess.Popen[Any]] = field(default_factory=list)

    # -- lifecycle --------------------------------------------------------------------------
    def __enter__(self) -> Lab:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Kill the lab's processes, delete its links and namespaces (idempotent)."""
        for proc in reversed(self.procs):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        self.procs.clear()
        for link in reversed(self.links):
            if link.a is None:
                _del_link(link.a_dev)
            if link.b is None:
                _del_link(link.b_dev)
        self.links.clear()
        for ns in reversed(self.namespaces):
            _del_netns(ns.name)
        self.namespaces.clear()

    # -- building -----------------------------------------------------------------------------
    def netns(self, tag: str = "ns") -> Netns:
        """A new namespace with lo up."""
        name = f"nt{os.getpid():x}-{next(_counter)}-{tag}"[:64]
        pyroute2_netns.create(name)
        ns = Netns(name)
        self.namespaces.append(ns)
        with _ipr(name) as ipr:
            ipr.link("set", index=_index(ipr, "lo"), state="up")
        return ns

    def link(self, a: Netns | None, b: Netns | None) -> Link:
        """A veth pair a<->b with IPv4 /30 and IPv6 /64 addresses, both ends up."""
        base = f"nv{os.getpid():x}x{next(_counter)}"
        a_dev, b_dev = base + "a", base + "b"
        net4 = _free_subnet4()
        net6 = _subnet6(net4)
        a_ip, b_ip = str(net4[1]), str(net4[2])
        a_ip6, b_ip6 = str(net6[1]), str(net6[2])
        with _ipr(None) as host:
            host.link("add", ifname=a_dev, kind="veth", peer=b_dev)
        link = Link(a, b, a_dev, b_dev, a_ip, b_ip, a_ip6, b_ip6)
        self.links.append(link)
        for ns, dev, ip4, ip6 in ((a, a_dev, a_ip, a_ip6), (b, b_dev, b_ip, b_ip6)):
            if ns is not None:
                with _ipr(None) as host:
                    host.link("set", index=_index(host, dev), net_ns_fd=ns.name)
            with _ipr(ns.name if ns else None) as ipr:
                idx = _index(ipr, dev)
                ipr.addr("add", index=idx, address=ip4, prefixlen=30)
                ipr.addr("add", index=idx, address=ip6, prefixlen=64, flags=IFA_F_NODAD)
                ipr.link("set", index=idx, state="up")
        return link

    def route(self, ns: Netns | None, dest: str, via: str) -> None:
        """Add a route in ns (None = host) to dest (CIDR) via a neighbour address."""
        with _ipr(ns.name if ns else None) as ipr:
            ipr.route("add", dst=dest, gateway=via)

    # -- processes ----------------------------------------------------------------------------
    @staticmethod
    def argv(ns: Netns | None, argv: list[str]) -> list[str]:
        """The command line that runs argv inside ns (unchanged for the host).

        `ip netns exec` rather than a setns in the child: it also gives the program the
        namespace's view of /sys and /etc/netns/NAME, as the tools run here expect."""
        return ["ip", "netns", "exec", ns.name, *argv] if ns else list(argv)

    def popen(self, ns: Netns | None, argv: list[str], **kw: Any) -> subprocess.Popen[Any]:
        """Start argv inside ns; the lab kills it (by PID) on exit."""
        proc: subprocess.Popen[Any] = subprocess.Popen(self.argv(ns, argv), **kw)
        self.procs.append(proc)
        return proc

    def run(
        self, ns: Netns | None, argv: list[str], timeout: float = 30, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run argv inside ns to completion; text output captured."""
        return subprocess.run(
            self.argv(ns, argv), capture_output=True, text=True, timeout=timeout, check=check
        )

    def enable_conntrack(self, ns: Netns) -> None:
        """Make ns track connections (hooks register only when a rule uses conntrack)."""
        rule = ["-A", "INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED", "-j", "ACCEPT"]
        for tool in ("iptables", "ip6tables"):
            self.run(ns, [tool, *rule])

    # -- crash leftovers ----------------------------------------------------------------------
    @staticmethod
    def clean_orphans() -> list[str]:
        """Delete lab namespaces whose creating process is gone; return their names."""
        removed: list[str] = []
        for name in pyroute2_netns.listnetns():
            m = _NAME_RE.match(name)
            if not m:
                continue
            pid = int(m.group(1), 16)
            try:
                os.kill(pid, 0)
                continue
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
            _del_netns(name)
            removed.append(name)
        return removed


def _used_subnets() -> set[ipaddress.IPv4Network]:
    with _ipr(None) as ipr:
        return {
            ipaddress.IPv4Interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}").network
            for a in ipr.get_addr(family=socket.AF_INET)
        }


def _free_subnet4() -> ipaddress.IPv4Network:
    """A /30 inside 10.128.0.0/9, chosen from the pid and a counter, not in use on the host."""
    used = _used_subnets()
    seed = (os.getpid() * 131 + next(_counter) * 7919) % (1 << 21)
    for i in range(1 << 21):
        idx = (seed + i) % (1 << 21)
        net = ipaddress.IPv4Network((int(ipaddress.IPv4Address("10.128.0.0")) + idx * 4, 30))
        if not any(net.overlaps(u) for u in used):
            return net
    raise RuntimeError("no free /30 in 10.128.0.0/9")


def _subnet6(net4: ipaddress.IPv4Network) -> ipaddress.IPv6Network:
    """The IPv6 /64 paired with an IPv4 /30: fd6e:7400::/32 plus the IPv4 network bits."""
    v = int(net4.network_address) & 0xFFFFFFFF
    return ipaddress.IPv6Network(((0xFD6E7400 << 96) | (v << 64), 64))
