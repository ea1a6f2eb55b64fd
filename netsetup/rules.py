"""Rule sets owned by nodetap: NOTRACK for replay traffic, on either iptables back end.

Every rule carries the comment ``nodetap:<owner>:<pid>`` (the process that made it), so that
``status`` lists exactly nodetap's rules and ``clean`` removes those of dead processes (a crash,
a SIGKILL) and nothing else.

Back ends (DESIGN, kernel notes): on nf_tables nodes, the nftables JSON API (python3-nftables)
in a table of nodetap's own, ``inet nodetap``; on legacy nodes, python-iptables (libiptc) in the
raw table, target ``CT --notrack``. The back end is detected the way kube-proxy does: the one
that holds rules wins, else what ``iptables -V`` says; NODETAP_IPTABLES=nft|legacy overrides.

Rules for another network namespace are applied by a forked child that enters it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import pickle
import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from netsetup.netns import enter_netns
from nodetap.errors import NodetapError

log = logging.getLogger(__name__)

TAG = "nodetap"
NFT_TABLE = "nodetap"
NFT_CHAINS = {"output": "output", "prerouting": "prerouting"}  # chain name -> hook
T = TypeVar("T")


def make_tag(owner: str, pid: int | None = None) -> str:
    return f"{TAG}:{owner}:{pid or os.getpid()}"


def parse_tag(comment: str) -> tuple[str, int] | None:
    """(owner, pid) of a nodetap tag, None for anything else."""
    m = re.fullmatch(r"nodetap:([A-Za-z0-9_.-]+):(\d+)", comment or "")
    return (m.group(1), int(m.group(2))) if m else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- running in a namespace --------------------------------------------------------------------
def in_netns(netns: str | None, fn: Callable[..., T], *args: Any) -> T:
    """fn(*args) in netns (a forked child that enters it), or here when netns is None."""
    if not netns:
        return fn(*args)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            os.close(r)
            enter_netns(netns)
            payload: Any = ("ok", fn(*args))
        except BaseException as e:
            payload = ("err", f"{type(e).__name__}: {e}", isinstance(e, NodetapError))
            code = 1
        with os.fdopen(w, "wb") as f:
            f.write(pickle.dumps(payload))
        os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        data = f.read()
    os.waitpid(pid, 0)
    res = pickle.loads(data)
    if res[0] == "ok":
        return res[1]  # type: ignore[no-any-return]
    if res[2]:
        raise NodetapError(res[1].split(": ", 1)[1])
    raise RuntimeError(f"in netns {netns}: {res[1]}")


# -- back end detection ------------------------------------------------------------------------
def _count_rules(cmd: list[str]) -> int:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("-A"))


def detect_backend() -> str:
    """'nft' or 'legacy' for the current namespace."""
    env = os.environ.get("NODETAP_IPTABLES", "")
    if env in ("nft", "legacy"):
        return env
    legacy = _count_rules(["iptables-legacy-save"]) + _count_rules(["ip6tables-legacy-save"])
    nft = _count_rules(["iptables-nft-save"]) + _count_rules(["ip6tables-nft-save"])
    if legacy > nft:
        return "legacy"
    if nft > legacy:
        return "nft"
    try:
        v = subprocess.run(["iptables", "-V"], capture_output=True, text=True, check=False).stdout
    except OSError:
        return "nft"
    return "legacy" if "legacy" in v else "nft"


# -- the rules -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class NotrackRule:
    """Don't track TCP to (output hook) and from (prerouting hook) ip:port."""

    ip: str
    port: int

    @property
    def v6(self) -> bool:
        return ipaddress.ip_address(self.ip).version == 6


@dataclass(frozen=True, slots=True)
class OwnedRule:
    """A rule nodetap finds on the node (status/clean)."""

    backend: str  # "nft" or "legacy"
    family: str  # "ip", "ip6" or "inet"
    table: str
    chain: str
    comment: str
    text: str
    handle: int = 0  # nft rule handle

    @property
    def owner(self) -> tuple[str, int] | None:
        return parse_tag(self.comment)


# nft back end (python3-nftables, JSON) ---------------------------------------------------------
def _nft() -> Any:
    import nftables

    n = nftables.Nftables()
    n.set_json_output(True)
    n.set_handle_output(True)
    return n


def _nft_cmd(cmds: list[dict[str, Any]]) -> Any:
    n = _nft()
    rc, out, err = n.json_cmd({"nftables": cmds})
    if rc != 0:
        raise RuntimeError(f"nft: {err.strip()}")
    return out


def _nft_list() -> list[dict[str, Any]]:
    n = _nft()
    rc, out, _ = n.cmd(f"list table inet {NFT_TABLE}")
    if rc != 0:
        return []
    return [x["rule"] for x in json.loads(out)["nftables"] if "rule" in x]


def _nft_rule_exprs(rule: NotrackRule, hook: str) -> list[dict[str, Any]]:
    fam = "ip6" if rule.v6 else "ip"
    addr_field, port_field = ("daddr", "dport") if hook == "output" else ("saddr", "sport")
    return [
        {
            "match": {
                "op": "==",
                "left": {"payload": {"protocol": fam, "field": addr_field}},
                "right": rule.ip,
            }
        },
        {
            "match": {
                "op": "==",
                "left": {"payload": {"protocol": "tcp", "field": port_field}},
                "right": rule.port,
            }
        },
        {"notrack": None},
    ]


def _rights(exprs: list[dict[str, Any]]) -> tuple[str, ...]:
    return tuple(json.dumps(e["match"]["right"]) for e in exprs if "match" in e)


def _nft_apply(rules: list[NotrackRule], tag: str) -> None:
    existing = {(r["chain"], r.get("comment", ""), _rights(r["expr"])) for r in _nft_list()}
    cmds: list[dict[str, Any]] = [{"add": {"table": {"family": "inet", "name": NFT_TABLE}}}]
    for chain, hook in NFT_CHAINS.items():
        cmds.append(
            {
                "add": {
                    "chain": {
                        "family": "inet",
                        "table": NFT_TABLE,
                        "name": chain,
                        "type": "filter",
                        "hook": hook,
                        "prio": -300,
                        "policy": "accept",
                    }
                }
            }
        )
    for rule in rules:
        for chain in NFT_CHAINS:
            exprs = _nft_rule_exprs(rule, chain)
            if (chain, tag, _rights(exprs)) in existing:
                continue
            cmds.append(
                {
                    "add": {
                        "rule": {
                            "family": "inet",
                            "table": NFT_TABLE,
                            "chain": chain,
                            "comment": tag,
                            "expr": exprs,
                        }
                    }
                }
            )
    _nft_cmd(cmds)


def _nft_owned() -> list[OwnedRule]:
    return [
        OwnedRule(
            "nft",
            "inet",
            NFT_TABLE,
            r["chain"],
            r.get("comment", ""),
            json.dumps(r["expr"]),
            int(r.get("handle", 0)),
        )
        for r in _nft_list()
    ]


def _nft_delete(rules: list[OwnedRule]) -> None:
    if not rules:
        return
    _nft_cmd(
        [
            {
                "delete": {
                    "rule": {
                        "family": "inet",
                        "table": NFT_TABLE,
                        "chain": r.chain,
                        "handle": r.handle,
                    }
                }
            }
            for r in rules
        ]
    )
    if not _nft_list():
        with contextlib.suppress(RuntimeError):
            _nft_cmd([{"delete": {"table": {"family": "inet", "name": NFT_TABLE}}}])


# legacy back end (python-iptables) -------------------------------------------------------------
LEGACY_TABLES = ("raw", "mangle", "nat", "filter")


def _iptc_rule(rule: NotrackRule, hook: str, tag: str) -> Any:
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


def _iptc_table(name: str, v6: bool) -> Any:
    import iptc

    t = iptc.Table6(name) if v6 else iptc.Table(name)
    t.refresh()
    return t


def _legacy_apply(rules: list[NotrackRule], tag: str) -> None:
    import iptc

    for rule in rules:
        table = _iptc_table("raw", rule.v6)
        for hook, chain_name in (("output", "OUTPUT"), ("prerouting", "PREROUTING")):
            chain = iptc.Chain(table, chain_name)
            want = _iptc_rule(rule, hook, tag)
            if any(_legacy_comment(r) == tag and r == want for r in chain.rules):
                continue
            chain.insert_rule(want)


def _legacy_comment(rule: Any) -> str:
    for m in rule.matches:
        if m.name == "comment":
            return str(m.parameters.get("comment", ""))
    return ""


def _legacy_owned() -> list[OwnedRule]:
    import iptc

    out: list[OwnedRule] = []
    for v6 in (False, True):
        for tname in LEGACY_TABLES:
            try:
                table = _iptc_table(tname, v6)
            except Exception:  # table not present in this kernel
                continue
            for chain in table.chains:
                for r in chain.rules:
                    c = _legacy_comment(r)
                    if parse_tag(c) is not None:
                        text = f"{r.src or ''}->{r.dst or ''} {r.protocol} {r.target.name}"
                        out.append(
                            OwnedRule("legacy", "ip6" if v6 else "ip", tname, chain.name, c, text)
                        )
    del iptc
    return out


def _legacy_delete(rules: list[OwnedRule]) -> None:
    import iptc

    for rule in rules:
        table = _iptc_table(rule.table, rule.family == "ip6")
        chain = iptc.Chain(table, rule.chain)
        for r in list(chain.rules):
            if _legacy_comment(r) == rule.comment:
                chain.delete_rule(r)


# -- the verbs -----------------------------------------------------------------------------------
def _apply(backend: str, rules: list[NotrackRule], tag: str) -> None:
    (_nft_apply if backend == "nft" else _legacy_apply)(rules, tag)


def _owned() -> list[OwnedRule]:
    out: list[OwnedRule] = []
    for fn in (_nft_owned, _legacy_owned):
        try:
            out += fn()
        except Exception as e:  # a back end absent from this node
            log.debug("listing %s: %s", fn.__name__, e)
    return out


def _delete(rules: list[OwnedRule]) -> int:
    _nft_delete([r for r in rules if r.backend == "nft"])
    _legacy_delete([r for r in rules if r.backend == "legacy"])
    return len(rules)


def _remove_tag(tag: str) -> int:
    return _delete([r for r in _owned() if r.comment == tag])


@dataclass
class RuleSet:
    """NOTRACK rules applied by one owner in one namespace; remove() takes exactly them away."""

    rules: list[NotrackRule]
    owner: str = "replay"
    netns: str | None = None
    backend: str = ""
    tag: str = ""
    applied: bool = field(default=False)

    def apply(self) -> RuleSet:
        """Add the rules (idempotent: a second apply adds nothing)."""
        self.tag = self.tag or make_tag(self.owner)
        self.backend = self.backend or in_netns(self.netns, detect_backend)
        in_netns(self.netns, _apply, self.backend, self.rules, self.tag)
        self.applied = True
        return self

    def remove(self) -> int:
        if not self.tag:
            return 0
        n = in_netns(self.netns, _remove_tag, self.tag)
        self.applied = False
        return n

    def __enter__(self) -> RuleSet:
        return self.apply()

    def __exit__(self, *exc: object) -> None:
        self.remove()


def status(netns: str | None = None) -> list[OwnedRule]:
    """Every rule tagged as nodetap's in the namespace, on both back ends."""
    return in_netns(netns, _owned)


def clean(netns: str | None = None, all_owners: bool = False) -> list[OwnedRule]:
    """Remove nodetap's rules whose owning process is gone (or all of them); return them."""
    found = status(netns)
    gone = [r for r in found if all_owners or (r.owner is not None and not pid_alive(r.owner[1]))]
    in_netns(netns, _delete, gone)
    return gone


# -- NAT check and the replay's NOTRACK ---------------------------------------------------------
def _nat_mentions(ip: str) -> list[str]:
    hits: list[str] = []
    pat = re.compile(rf"(?<![0-9a-fA-F.:]){re.escape(ip)}(?![0-9a-fA-F:])")
    tools = ("iptables-save", "ip6tables-save", "iptables-legacy-save", "ip6tables-legacy-save")
    for cmd in ([t, "-t", "nat"] for t in tools):
        try:
            out = subprocess.run(
                cmd, capture_output=True, text=True, check=False, timeout=10
            ).stdout
        except (OSError, subprocess.TimeoutExpired):
            continue
        hits += [
            ln for ln in out.splitlines() if ln.startswith("-A") and pat.search(ln) and "NAT" in ln
        ]
    try:
        out = subprocess.run(
            ["nft", "list", "ruleset"], capture_output=True, text=True, check=False, timeout=10
        ).stdout
        hits += [ln.strip() for ln in out.splitlines() if pat.search(ln) and "nat" in ln]
    except (OSError, subprocess.TimeoutExpired):
        pass
    return hits


def _conntrack_nat(ip: str, port: int) -> bool:
    try:
        from netsetup.conntrack import entries

        for e in entries():
            if (
                e.orig_dst == ip
                and e.orig_dport == port
                and (e.reply_src, e.reply_sport) != (ip, port)
            ):
                return True
    except Exception as ex:
        log.debug("conntrack NAT check: %s", ex)
    return False


def target_needs_nat(ip: str, port: int, netns: str | None = None) -> bool:
    """Whether traffic to ip:port is translated (a DNAT rule names it, or conntrack shows it)."""
    return bool(in_netns(netns, _nat_mentions, ip)) or bool(
        in_netns(netns, _conntrack_nat, ip, port)
    )


def notrack_for_target(
    ip: str, port: int, netns: str | None = None, owner: str = "replay"
) -> RuleSet:
    """Apply NOTRACK for the replay's traffic to ip:port; refused when the target needs NAT."""
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        raise NodetapError(f"--notrack needs an IP address target, not {ip!r}") from None
    if target_needs_nat(ip, port, netns):
        raise NodetapError(
            f"--notrack refused: traffic to {ip}:{port} is NATed (a Service address?) and "
            "untracked packets are not translated; replay to a pod address or drop --notrack"
        )
    return RuleSet([NotrackRule(ip, port)], owner=owner, netns=netns).apply()
