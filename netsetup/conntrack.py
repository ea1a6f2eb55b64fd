"""Conntrack over netlink (pyroute2): fill level, per-CPU statistics, stale entries, pre-flight.

Everything takes ``netns``: None for this process's namespace (the host's with host networking),
or the name of a namespace under /run/netns. Netlink sockets are closed by ``with`` blocks.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import math
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from pyroute2 import Conntrack

from netsetup.netns import read_sysctl, require

log = logging.getLogger(__name__)

STAT_KEYS = ("insert_failed", "drop", "early_drop", "search_restart")
# TCP conntrack states of a flow that has finished (or is finishing): what an earlier run leaves.
CLOSING_STATES = {"TIME_WAIT", "CLOSE", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK", "SYN_SENT"}


def _open(netns: str | None, **kw: Any) -> Any:
    """A conntrack netlink socket in netns (pyroute2 opens it there)."""
    if not netns:
        return Conntrack(**kw)
    require(netns)
    # flags=0: pyroute2's default (O_CREAT) would make a namespace that does not exist.
    return Conntrack(netns=netns, flags=0, **kw)


@contextlib.contextmanager
def _ct(netns: str | None, family: int = socket.AF_INET) -> Iterator[Any]:
    ct = _open(netns, nfgen_family=family)
    try:
        yield ct
    finally:
        ct.close()


@dataclass(slots=True)
class Sample:
    """One reading of the conntrack table of a namespace."""

    t: float  # time.time()
    count: int
    max: int
    insert_failed: int = 0
    drop: int = 0
    early_drop: int = 0
    search_restart: int = 0

    @property
    def fill(self) -> float:
        return self.count / self.max if self.max else 0.0

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["fill"] = round(self.fill, 4)
        return d


class Monitor:
    """Samples count/max and the per-CPU statistics summed over CPUs, in one namespace."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns
        self._ct = _open(netns)

    def sample(self) -> Sample:
        count = int(self._ct.count() or 0)
        cmax = int(self._ct.conntrack_max_size() or 0)
        s = Sample(t=time.time(), count=count, max=cmax)
        for cpu in self._ct.stat():
            for k in STAT_KEYS:
                setattr(s, k, getattr(s, k) + int(cpu.get(k, 0) or 0))
        return s

    def reap(self) -> None:
        """Walk the table once: the kernel's dump frees expired entries it meets, which its
        garbage collector (global, up to a minute apart) would otherwise leave counted."""
        for fam in (socket.AF_INET, socket.AF_INET6):
            with _ct(self.netns, fam) as ct:
                for _ in ct.dump_entries():
                    pass

    def close(self) -> None:
        self._ct.close()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@dataclass(slots=True)
class Preflight:
    """What the node's conntrack and port settings allow, against a plan."""

    netns: str  # "host" or the namespace name
    max: int
    count: int
    time_wait_s: int
    port_range: tuple[int, int]
    ceiling_new_per_s: float  # new connections per second the table sustains (free / TIME_WAIT)
    port_ceiling_per_s: float  # new connections per second to one target ip:port (ports / 60 s)
    planned_new_per_s: float | None = None
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        out = [
            f"conntrack ({self.netns}): {self.count}/{self.max} entries "
            f"({100 * self.count / max(1, self.max):.1f}% full), TIME_WAIT {self.time_wait_s}s, "
            f"ephemeral ports {self.port_range[0]}-{self.port_range[1]}",
            f"ceiling on new connections: ~{self.ceiling_new_per_s:.0f}/s (conntrack), "
            f"~{self.port_ceiling_per_s:.0f}/s per target (ports)",
        ]
        out += [f"warning: {w}" for w in self.warnings]
        return out


def preflight(
    netns: str | None = None, planned_new_per_s: float | None = None, threshold: float = 0.8
) -> Preflight:
    """Table size, fill, TIME_WAIT timeout and port range; warnings when the plan exceeds them."""
    with Monitor(netns) as mon:
        s = mon.sample()
    tw = int(read_sysctl("/proc/sys/net/netfilter/nf_conntrack_tcp_timeout_time_wait", netns))
    lo, hi = (int(x) for x in read_sysctl("/proc/sys/net/ipv4/ip_local_port_range", netns).split())
    free = max(0, int(s.max * threshold) - s.count)
    pf = Preflight(
        netns=netns or "host",
        max=s.max,
        count=s.count,
        time_wait_s=tw,
        port_range=(lo, hi),
        ceiling_new_per_s=free / max(1, tw),
        port_ceiling_per_s=(hi - lo + 1) / 60.0,
        planned_new_per_s=planned_new_per_s,
    )
    if planned_new_per_s == math.inf:
        pf.warnings.append(
            "as fast as possible with a new connection per request: new connections will be "
            f"held near the conntrack ceiling (~{pf.ceiling_new_per_s:.0f}/s) by the throttle"
        )
    elif planned_new_per_s:
        if planned_new_per_s > pf.ceiling_new_per_s:
            pf.warnings.append(
                f"the plan opens ~{planned_new_per_s:.0f} connections/s, above the conntrack "
                f"ceiling ~{pf.ceiling_new_per_s:.0f}/s: replay will slow new connections "
                "(use keep-alive, --notrack, or raise nf_conntrack_max)"
            )
        if planned_new_per_s > pf.port_ceiling_per_s:
            pf.warnings.append(
                f"the plan opens ~{planned_new_per_s:.0f} connections/s to one target, above "
                f"the ephemeral port ceiling ~{pf.port_ceiling_per_s:.0f}/s"
            )
    return pf


@dataclass(frozen=True, slots=True)
class Entry:
    """A conntrack entry, reduced to what matching and deleting need."""

    family: int
    proto: int
    orig_src: str
    orig_sport: int
    orig_dst: str
    orig_dport: int
    reply_src: str
    reply_sport: int
    state: str

    def __str__(self) -> str:
        return (
            f"{self.state} {self.orig_src}:{self.orig_sport} -> {self.orig_dst}:{self.orig_dport}"
            f" (reply from {self.reply_src}:{self.reply_sport})"
        )


def _entry(raw: Any, family: int) -> Entry:
    o, r = raw.tuple_orig, raw.tuple_reply
    state = raw.protoinfo.state_name() if raw.protoinfo is not None else ""
    return Entry(
        family,
        int(o.proto or 0),
        str(o.saddr),
        int(o.sport or 0),
        str(o.daddr),
        int(o.dport or 0),
        str(r.saddr),
        int(r.sport or 0),
        state,
    )


def _family(ip: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(ip).version == 6 else socket.AF_INET


def entries(
    netns: str | None = None, families: tuple[int, ...] = (socket.AF_INET, socket.AF_INET6)
) -> list[Entry]:
    """All entries of the namespace's table (IPv4 and IPv6)."""
    out: list[Entry] = []
    for fam in families:
        with _ct(netns, fam) as ct:
            out.extend(_entry(e, fam) for e in ct.dump_entries())
    return out


def _norm(ip: str) -> str:
    return str(ipaddress.ip_address(ip))


def find_stale(target_ip: str, target_port: int, netns: str | None = None) -> list[Entry]:
    """TCP entries left towards ip:port by finished flows, matched on the original tuple
    (the address the client dialled) or the reply tuple (the address that answered, so a
    Service address translated to a pod address matches either way)."""
    ip = _norm(target_ip)
    found = []
    for e in entries(netns, (_family(ip),)):
        if e.proto != socket.IPPROTO_TCP or e.state not in CLOSING_STATES:
            continue
        orig = _norm(e.orig_dst) == ip and e.orig_dport == target_port
        reply = _norm(e.reply_src) == ip and e.reply_sport == target_port
        if orig or reply:
            found.append(e)
    return found


def delete(found: list[Entry], netns: str | None = None) -> int:
    """Delete exactly these entries (by original tuple); returns how many went."""
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

    n = 0
    for fam in {e.family for e in found}:
        with _ct(netns, fam) as ct:
            for e in (x for x in found if x.family == fam):
                t = NFCTAttrTuple(
                    family=fam,
                    proto=e.proto,
                    saddr=e.orig_src,
                    daddr=e.orig_dst,
                    sport=e.orig_sport,
                    dport=e.orig_dport,
                )
                try:
                    ct.entry("del", tuple_orig=t)
                    n += 1
                except Exception as ex:  # the entry may expire between dump and delete
                    log.debug("conntrack delete %s: %s", e, ex)
    return n


def flush_stale(target_ip: str, target_port: int, netns: str | None = None) -> list[Entry]:
    """Delete the stale entries towards ip:port; returns what was deleted."""
    found = find_stale(target_ip, target_port, netns)
    delete(found, netns)
    return found
