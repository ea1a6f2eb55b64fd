"""The legacy iptables back end: nodetap's NOTRACK rules in the raw table (target
``CT --notrack``, match ``comment`` carrying the tag) through python-iptables (libiptc).
Also reads the legacy tables for back-end detection and the NAT check.

Only tables the kernel already has are read (``/proc/thread-self/net/ip*_tables_names``, the
calling thread's namespace): opening one through libiptc would load its module."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from netsetup.rule_model import NotrackRule, OwnedRule, parse_tag

log = logging.getLogger(__name__)

HOOK_CHAINS = (("output", "OUTPUT"), ("prerouting", "PREROUTING"))


def loaded_tables(v6: bool) -> list[str]:
    """Names of the legacy tables present in this thread's namespace."""
    path = f"/proc/thread-self/net/{'ip6' if v6 else 'ip'}_tables_names"
    try:
        with open(path) as f:
            return f.read().split()
    except OSError:  # ip_tables not loaded: no legacy table anywhere
        return []


def _table(name: str, v6: bool) -> Any:
    import iptc

    t = iptc.Table6(name) if v6 else iptc.Table(name)
    t.refresh()  # libiptc's handle (and its socket) made now, in this thread's namespace
    return t


@dataclass(frozen=True, slots=True)
class LegacyEntry:
    """One rule of a legacy chain: its destination read from libiptc's entry itself, and the
    python-iptables rule when python-iptables can decode it (None when an extension it uses
    has no library python-iptables finds, e.g. the IPv6 DNAT target)."""

    chain: str
    dst: str  # "address/prefix length"
    rule: Any | None


def _dst(entry: Any, v6: bool) -> str:
    ip = entry.ipv6 if v6 else entry.ip
    addr = ipaddress.ip_address(bytes(ip.dst))
    plen = sum(bin(b).count("1") for b in bytes(ip.dmsk))
    return f"{addr}/{plen}"


def entries_of(name: str, v6: bool) -> Iterator[LegacyEntry]:
    """Every rule of one table, chain by chain."""
    table = _table(name, v6)
    for chain in table.chains:
        entry = table.first_rule(chain.name)
        while entry:
            try:
                rule = table.create_rule(entry, chain)
            except Exception as e:  # iptc.XTablesError: an extension it cannot load
                log.debug("legacy %s/%s: %s", name, chain.name, e)
                rule = None
            yield LegacyEntry(chain.name, _dst(entry, v6), rule)
            entry = table.next_rule(entry)


def count_rules() -> int:
    """Rules in every legacy table of both families (what iptables-legacy-save would list)."""
    return sum(
        sum(1 for _ in entries_of(name, v6)) for v6 in (False, True) for name in loaded_tables(v6)
    )


def _rule(rule: NotrackRule, hook: str, tag: str) -> Any:
    import iptc

    r = iptc.Rule6() if rule.v6 else iptc.Rule()
    plen = 128 if rule.v6 else 32
    if hook == "output":
        r.dst = f"{rule.ip}/{plen}"
    else:
        r.src = f"{rule.ip}/{plen}"
    r.protocol = "tcp"
    m = r.create_match("tcp")
    if hook == "output":
        m.dport = str(rule.port)
    else:
        m.sport = str(rule.port)
    r.create_match("comment").comment = tag
    r.create_target("CT").notrack = ""
    return r


def comment_of(rule: Any) -> str:
    for m in rule.matches:
        if m.name == "comment":
            return str(m.parameters.get("comment", ""))
    return ""


def apply(rules: list[NotrackRule], tag: str) -> None:
    """Insert the rules tagged `tag` into raw OUTPUT/PREROUTING (not twice)."""
    import iptc

    for rule in rules:
        table = _table("raw", rule.v6)
        for hook, chain_name in HOOK_CHAINS:
            chain = iptc.Chain(table, chain_name)
            want = _rule(rule, hook, tag)
            if any(comment_of(r) == tag and r == want for r in chain.rules):
                continue
            chain.insert_rule(want)


def owned() -> list[OwnedRule]:
    """Every legacy rule whose comment is a nodetap tag."""
    out: list[OwnedRule] = []
    for v6 in (False, True):
        for tname in loaded_tables(v6):
            for e in entries_of(tname, v6):
                r = e.rule
                if r is None:
                    continue  # not a rule of ours: ours decode (comment, CT)
                c = comment_of(r)
                if parse_tag(c) is not None:
                    text = f"{r.src or ''}->{r.dst or ''} {r.protocol} {r.target.name}"
                    fam = "ip6" if v6 else "ip"
                    out.append(OwnedRule("legacy", fam, tname, e.chain, c, text))
    return out


def delete(rules: list[OwnedRule]) -> None:
    """Delete the rules carrying these rules' comments from their chains."""
    import iptc

    for rule in rules:
        table = _table(rule.table, rule.family == "ip6")
        chain = iptc.Chain(table, rule.chain)
        for r in list(chain.rules):
            if comment_of(r) == rule.comment:
                chain.delete_rule(r)
