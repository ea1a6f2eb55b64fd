"""tc BPF filters (cls_bpf) on the clsact hooks of every link, listed and deleted over rtnetlink
(pyroute2), in the calling thread's namespace."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

log = logging.getLogger(__name__)

# clsact's hooks as tc filter parents (tc's "ingress" and "egress", ffff:fff2 and ffff:fff3).
PARENTS = {"ingress": 0xFFFFFFF2, "egress": 0xFFFFFFF3}


@dataclass(frozen=True, slots=True)
class TcFilter:
    dev: str
    parent: str  # "ingress" or "egress"
    pref: int
    handle: str
    name: str
    index: int = 0  # the link's ifindex
    info: int = 0  # tcm_info: pref << 16 | protocol (network order), as the kernel reported it

    def __str__(self) -> str:
        return f"tc filter {self.dev} {self.parent} pref {self.pref} bpf {self.name}"


def bpf_filters(prefix: str = "") -> list[TcFilter]:
    """The BPF filters whose program name starts with prefix, on every link's clsact hooks."""
    found: list[TcFilter] = []
    with IPRoute() as ipr:
        for link in ipr.get_links():
            dev, idx = link.get_attr("IFLA_IFNAME"), link["index"]
            for parent, pid in PARENTS.items():
                try:
                    msgs = list(ipr.get_filters(index=idx, parent=pid))
                except NetlinkError as e:  # no clsact on this link
                    log.debug("tc filters of %s %s: %s", dev, parent, e)
                    continue
                for m in msgs:
                    opts = m.get_attr("TCA_OPTIONS")
                    if m.get_attr("TCA_KIND") != "bpf" or opts is None or not m["handle"]:
                        continue  # not cls_bpf, or the chain head without a filter
                    name = str(opts.get_attr("TCA_BPF_NAME") or "")
                    if name.startswith(prefix):
                        f = TcFilter(
                            dev, parent, m["info"] >> 16, hex(m["handle"]), name, idx, m["info"]
                        )
                        found.append(f)
    return found


def delete(filters: list[TcFilter]) -> list[TcFilter]:
    """Delete exactly these filters (link, hook, pref, protocol, handle); those deleted."""
    gone: list[TcFilter] = []
    with IPRoute() as ipr:
        for f in filters:
            try:
                ipr.tc(
                    "del-filter",
                    "bpf",
                    f.index,
                    int(f.handle, 16),
                    parent=PARENTS[f.parent],
                    info=f.info,
                )
                gone.append(f)
            except NetlinkError as e:  # gone meanwhile (its link deleted, say)
                log.debug("deleting %s: %s", f, e)
    return gone
