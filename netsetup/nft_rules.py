"""The nf_tables back end: nodetap's NOTRACK rules in a table of its own, ``inet nodetap``,
through the nftables JSON API (python3-nftables, libnftables). Also lists the whole ruleset as
JSON for back-end detection and the NAT check."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from netsetup.rule_model import NotrackRule, OwnedRule
from nodetap.errors import HostError

NFT_TABLE = "nodetap"
NFT_CHAINS = {"output": "output", "prerouting": "prerouting"}  # chain name -> hook


def _session() -> Any:
    try:
        import nftables
    except ImportError:
        raise HostError("the nftables Python module is missing; install python3-nftables") from None
    n = nftables.Nftables()
    n.set_json_output(True)
    n.set_handle_output(True)
    return n


def nft_cmd(cmds: list[dict[str, Any]]) -> dict[str, Any]:
    """Run nftables JSON commands in one transaction; their JSON output."""
    rc, out, err = _session().json_cmd({"nftables": cmds})
    if rc != 0:
        raise HostError(f"nft refused {json.dumps(cmds)[:200]}: {str(err).strip()}")
    return out if isinstance(out, dict) else {}


def nft_objects(what: dict[str, Any]) -> list[dict[str, Any]]:
    """The objects of a `list` command ({"ruleset": None}, {"table": {...}}), [] when the kernel
    refuses (no such table, nf_tables absent)."""
    try:
        out = nft_cmd([{"list": what}])
    except HostError:
        return []
    return [x for x in out.get("nftables", []) if isinstance(x, dict)]


def _rules() -> list[dict[str, Any]]:
    table = {"table": {"family": "inet", "name": NFT_TABLE}}
    return [x["rule"] for x in nft_objects(table) if "rule" in x]


def _rule_exprs(rule: NotrackRule, hook: str) -> list[dict[str, Any]]:
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


def _chain(name: str, hook: str) -> dict[str, Any]:
    return {
        "add": {
            "chain": {
                "family": "inet",
                "table": NFT_TABLE,
                "name": name,
                "type": "filter",
                "hook": hook,
                "prio": -300,
                "policy": "accept",
            }
        }
    }


def apply(rules: list[NotrackRule], tag: str) -> None:
    """Add the rules tagged `tag` (those already there are not added twice)."""
    existing = {(r["chain"], r.get("comment", ""), _rights(r["expr"])) for r in _rules()}
    cmds: list[dict[str, Any]] = [{"add": {"table": {"family": "inet", "name": NFT_TABLE}}}]
    cmds += [_chain(name, hook) for name, hook in NFT_CHAINS.items()]
    for rule in rules:
        for chain in NFT_CHAINS:
            exprs = _rule_exprs(rule, chain)
            if (chain, tag, _rights(exprs)) in existing:
                continue
            new = {"family": "inet", "table": NFT_TABLE, "chain": chain}
            cmds.append({"add": {"rule": {**new, "comment": tag, "expr": exprs}}})
    nft_cmd(cmds)


def owned() -> list[OwnedRule]:
    """The rules of table ``inet nodetap``."""
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
        for r in _rules()
    ]


def delete(rules: list[OwnedRule]) -> None:
    """Delete these rules (by handle); the table goes with its last rule."""
    if not rules:
        return
    nft_cmd(
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
    if not _rules():
        # HostError: gone already (another cleaner was faster).
        with contextlib.suppress(HostError):
            nft_cmd([{"delete": {"table": {"family": "inet", "name": NFT_TABLE}}}])
