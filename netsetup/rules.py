"""Netfilter rule sets owned by nodetap: NOTRACK for replay traffic, on either iptables back end.

Every rule carries the comment ``nodetap:<owner>:<pid>`` (the process that made it), so that
``status`` lists exactly nodetap's rules and ``clean`` removes those of dead processes (a crash,
a SIGKILL) and nothing else.

Back ends: on nf_tables nodes, the nftables JSON API in a table of nodetap's own,
``inet nodetap`` (netsetup/nft_rules.py); on legacy nodes, python-iptables (libiptc) in the raw
table, target ``CT --notrack`` (netsetup/legacy_rules.py). Which one: netsetup/backend_detect.py.
Rules for another network namespace are applied from a thread that enters it
(netsetup/netns.py).
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field

from netsetup import legacy_rules, nft_rules
from netsetup.backend_detect import detect_backend
from netsetup.nat_check import target_needs_nat
from netsetup.netns import in_netns
from netsetup.rule_model import NotrackRule, OwnedRule, make_tag
from nodetap.errors import ConfigError

__all__ = [
    "NetfilterRuleSet",
    "NotrackRule",
    "OwnedRule",
    "clean",
    "delete_here",
    "notrack_for_target",
    "owned_here",
    "status",
]

log = logging.getLogger(__name__)


# -- in the calling thread's namespace ---------------------------------------------------------
def _apply_here(backend: str, rules: list[NotrackRule], tag: str) -> None:
    (nft_rules.apply if backend == "nft" else legacy_rules.apply)(rules, tag)


def owned_here() -> list[OwnedRule]:
    """nodetap's rules in this thread's namespace, on both back ends."""
    out: list[OwnedRule] = []
    for backend in (nft_rules, legacy_rules):
        try:
            out += backend.owned()
        except Exception as e:  # a back end absent from this node
            log.debug("listing %s: %s", backend.__name__, e)
    return out


def delete_here(rules: list[OwnedRule]) -> int:
    nft_rules.delete([r for r in rules if r.backend == "nft"])
    legacy_rules.delete([r for r in rules if r.backend == "legacy"])
    return len(rules)


def _remove_tag_here(tag: str) -> int:
    return delete_here([r for r in owned_here() if r.comment == tag])


# -- the model and the verbs -------------------------------------------------------------------
@dataclass
class NetfilterRuleSet:
    """NOTRACK rules applied by one owner in one namespace; remove() takes exactly them away."""

    rules: list[NotrackRule]
    owner: str = "replay"
    netns: str | None = None
    backend: str = ""
    tag: str = ""
    applied: bool = field(default=False)

    def apply(self) -> NetfilterRuleSet:
        """Add the rules (idempotent: a second apply adds nothing)."""
        self.tag = self.tag or make_tag(self.owner)
        self.backend = self.backend or in_netns(self.netns, detect_backend)
        in_netns(self.netns, _apply_here, self.backend, self.rules, self.tag)
        self.applied = True
        return self

    def remove(self) -> int:
        if not self.tag:
            return 0
        n = in_netns(self.netns, _remove_tag_here, self.tag)
        self.applied = False
        return n

    def __enter__(self) -> NetfilterRuleSet:
        return self.apply()

    def __exit__(self, *exc: object) -> None:
        self.remove()


def status(netns: str | None = None) -> list[OwnedRule]:
    """Every rule tagged as nodetap's in the namespace, on both back ends."""
    return in_netns(netns, owned_here)


def clean(netns: str | None = None, all_owners: bool = False) -> list[OwnedRule]:
    """Remove nodetap's rules whose owning process is gone (or all of them); return them."""
    gone = [r for r in status(netns) if all_owners or r.dead]
    in_netns(netns, delete_here, gone)
    return gone


def notrack_for_target(
    ip: str, port: int, netns: str | None = None, owner: str = "replay"
) -> NetfilterRuleSet:
    """Apply NOTRACK for the replay's traffic to ip:port; refused when the target needs NAT."""
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        raise ConfigError(f"--notrack needs an IP address target, not {ip!r}") from None
    if target_needs_nat(ip, port, netns):
        raise ConfigError(
            f"--notrack refused: traffic to {ip}:{port} is NATed (a Service address?) and "
            "untracked packets are not translated; replay to a pod address or drop --notrack"
        )
    return NetfilterRuleSet([NotrackRule(ip, port)], owner=owner, netns=netns).apply()
