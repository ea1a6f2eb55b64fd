"""Whether traffic to a target is translated (NAT): untracked packets are not, so NOTRACK must
not be applied to such a target (a Service address, typically).

A target is NATed when a rule of a NAT chain matches its address as destination (nf_tables
through the JSON ruleset, which holds iptables-nft's rules too; legacy tables through
libiptc), or when conntrack shows a flow to it answered from another address."""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

from netsetup import conntrack, legacy_rules
from netsetup.netns import in_netns
from netsetup.nft_rules import nft_objects

log = logging.getLogger(__name__)


def _same_ip(value: Any, ip: str) -> bool:
    """Whether an address (``10.0.0.5``, ``10.0.0.5/32``, ``fd00::5/128``) is exactly ip."""
    if not isinstance(value, str):
        return False
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        return False
    return net.num_addresses == 1 and net.network_address == ipaddress.ip_address(ip)


def _nft_rule_names_dst(rule: dict[str, Any], ip: str) -> bool:
    for e in rule.get("expr", []):
        m = e.get("match") if isinstance(e, dict) else None
        if not m or m.get("op", "==") not in ("==", "in"):
            continue
        left = m.get("left", {})
        if not (isinstance(left, dict) and left.get("payload", {}).get("field") == "daddr"):
            continue
        right = m.get("right")
        if isinstance(right, dict) and "prefix" in right:
            p = right["prefix"]
            right = f"{p.get('addr')}/{p.get('len')}"
        values = right.get("set", []) if isinstance(right, dict) else [right]
        if any(_same_ip(v, ip) for v in values):
            return True
    return False


def nft_mentions(ip: str) -> list[str]:
    """nf_tables rules of NAT chains matching ip as destination, as JSON text."""
    objs = nft_objects({"ruleset": None})
    nat_chains = {
        (c["family"], c["table"], c["name"])
        for c in (x["chain"] for x in objs if "chain" in x)
        if c.get("type") == "nat"
    }
    rules = [x["rule"] for x in objs if "rule" in x]
    return [
        str(r.get("expr"))
        for r in rules
        if (r.get("family"), r.get("table"), r.get("chain")) in nat_chains
        and _nft_rule_names_dst(r, ip)
    ]


def legacy_mentions(ip: str) -> list[str]:
    """Legacy nat-table rules matching ip as destination."""
    v6 = ipaddress.ip_address(ip).version == 6
    if "nat" not in legacy_rules.loaded_tables(v6):
        return []
    return [
        f"nat {e.chain}: -d {e.dst}"
        for e in legacy_rules.entries_of("nat", v6)
        if _same_ip(e.dst, ip)
    ]


def _rule_mentions(ip: str) -> list[str]:
    hits: list[str] = []
    for find in (nft_mentions, legacy_mentions):
        try:
            hits += find(ip)
        except Exception as e:  # a back end absent from this node
            log.debug("NAT check (%s): %s", find.__name__, e)
    return hits


def _conntrack_nat(ip: str, port: int, netns: str | None) -> bool:
    try:
        return any(
            e.orig_dst == ip and e.orig_dport == port and (e.reply_src, e.reply_sport) != (ip, port)
            for e in conntrack.entries(netns)
        )
    except Exception as ex:
        log.debug("conntrack NAT check: %s", ex)
        return False


def target_needs_nat(ip: str, port: int, netns: str | None = None) -> bool:
    """Whether traffic to ip:port is translated (a NAT rule names it, or conntrack shows it)."""
    return bool(in_netns(netns, _rule_mentions, ip)) or _conntrack_nat(ip, port, netns)
