"""A network-namespace lab for tests: namespaces, veth links with addresses, processes inside.

Everything a lab creates is removed when its ``with`` block ends, even when the block raises:
processes started in it are killed by PID, namespaces deleted (which removes their veth ends,
their iptables/nft rules and their conntrack tables), host-side veth ends deleted.

API::

    from netsetup.lab import Lab

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
import subprocess
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)

_counter = itertools.count(1)
_NAME_RE = re.compile(r"^nt([0-9a-f]+)-\d+-")


def _ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = ["ip", *(["-n", ns] if ns else []), *args]
    return subprocess.run(argv, capture_output=True, text=True, check=check)


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
                _ip("link", "del", link.a_dev, check=False)
            if link.b is None:
                _ip("link", "del", link.b_dev, check=False)
        self.links.clear()
        for ns in reversed(self.namespaces):
            _ip("netns", "del", ns.name, check=False)
        self.namespaces.clear()

    # -- building -----------------------------------------------------------------------------
    def netns(self, tag: str = "ns") -> Netns:
        """A new namespace with lo up."""
        name = f"nt{os.getpid():x}-{next(_counter)}-{tag}"[:64]
        _ip("netns", "add", name)
        ns = Netns(name)
        self.namespaces.append(ns)
        _ip("link", "set", "lo", "up", ns=name)
        return ns

    def link(self, a: Netns | None, b: Netns | None) -> Link:
        """A veth pair a<->b with IPv4 /30 and IPv6 /64 addresses, both ends up."""
        base = f"nv{os.getpid():x}x{next(_counter)}"
        a_dev, b_dev = base + "a", base + "b"
        net4 = _free_subnet4()
        net6 = _subnet6(net4)
        a_ip, b_ip = str(net4[1]), str(net4[2])
        a_ip6, b_ip6 = str(net6[1]), str(net6[2])
        _ip("link", "add", a_dev, "type", "veth", "peer", "name", b_dev)
        link = Link(a, b, a_dev, b_dev, a_ip, b_ip, a_ip6, b_ip6)
        self.links.append(link)
        for ns, dev, ip4, ip6 in ((a, a_dev, a_ip, a_ip6), (b, b_dev, b_ip, b_ip6)):
            if ns is not None:
                _ip("link", "set", dev, "netns", ns.name)
            where = ns.name if ns else None
            _ip("addr", "add", f"{ip4}/30", "dev", dev, ns=where)
            _ip("addr", "add", f"{ip6}/64", "dev", dev, "nodad", ns=where)
            _ip("link", "set", dev, "up", ns=where)
        return link

    def route(self, ns: Netns | None, dest: str, via: str) -> None:
        """Add a route in ns (None = host) to dest (CIDR) via a neighbour address."""
        _ip("route", "add", dest, "via", via, ns=ns.name if ns else None)

    # -- processes ----------------------------------------------------------------------------
    @staticmethod
    def argv(ns: Netns | None, argv: list[str]) -> list[str]:
        """The command line that runs argv inside ns (unchanged for the host)."""
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
        for line in _ip("netns", "list", check=False).stdout.splitlines():
            name = line.split()[0] if line.split() else ""
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
            _ip("netns", "del", name, check=False)
            removed.append(name)
        return removed


def _used_subnets() -> set[ipaddress.IPv4Network]:
    out = _ip("-4", "-o", "addr", "show", check=False).stdout
    nets = set()
    for m in re.finditer(r"inet (\S+)", out):
        nets.add(ipaddress.IPv4Interface(m.group(1)).network)
    return nets


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
