"""Redirecting a process's outbound connections to a local port (mocks during a replay).

In the network namespace of the service under test (found from its pid), a NAT chain of
nodetap's table ``inet nodetap`` (netsetup/nft_rules.py) redirects new TCP connections to each
recorded dependency address (``ip daddr D tcp dport P``) to the responder's port on the
loopback address (``redirect to :R``: the output hook's DNAT to 127.0.0.1, which is what works
for locally generated traffic, also towards 127.0.0.1 itself). The rules carry nodetap's tag
(``nodetap:mocks:<pid>``): `nodetap netsetup status|clean` lists them and removes them once
their owner is gone (a SIGKILL); ``Redirect.remove()`` takes exactly them away.

When the service shares the caller's namespace (the host's), the rules also match the
service's cgroup (``socket cgroupv2``), so that only its connections are redirected.
"""

from __future__ import annotations

import ipaddress
import json
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pyroute2 import netns as pyroute2_netns

from netsetup.nft_rules import NFT_TABLE, delete, nft_cmd, nft_objects
from netsetup.rule_model import OwnedRule, make_tag
from nodetap.errors import ConfigError, HostError

T = TypeVar("T")
CHAIN = "mocks"
CGROUP_ROOT = "/sys/fs/cgroup"


def netns_inode(pid: int | str) -> int:
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except FileNotFoundError:
        raise ConfigError(
            f"process {pid} not found; give the pid of the service under test"
        ) from None
    except PermissionError:
        raise HostError(f"reading /proc/{pid}/ns/net needs root") from None


def shares_my_netns(pid: int) -> bool:
    return netns_inode(pid) == netns_inode("self")


def in_pid_netns(pid: int, fn: Callable[..., T], *args: Any) -> T:
    """fn(*args) in the network namespace of process pid, from a short-lived thread (the
    calling thread stays where it is); here when the pid shares this namespace."""
    if shares_my_netns(pid):
        return fn(*args)
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            pyroute2_netns.setns(f"/proc/{pid}/ns/net", flags=0)
            outcome["value"] = fn(*args)
        except BaseException as e:  # handed to the caller below
            outcome["error"] = e

    t = threading.Thread(target=run, name=f"netns-of:{pid}", daemon=True)
    t.start()
    t.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]  # type: ignore[no-any-return]


def cgroup_path(pid: int) -> str:
    """The cgroup v2 path of pid, relative to the hierarchy's root ("" for the root)."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    return line[3:].strip().lstrip("/")
    except FileNotFoundError:
        raise ConfigError(f"process {pid} not found; give the service's pid") from None
    raise HostError(f"process {pid} is in no cgroup v2; redirecting by cgroup needs cgroup v2")


def cgroup2_mount() -> str:
    """Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified on
    hybrid hosts)."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split()[:1] == ["cgroup2"]:
                return left.split()[4]
    raise HostError("no cgroup v2 hierarchy is mounted; redirecting by cgroup needs one")


def nft_cgroup(path: str) -> tuple[str, int]:
    """(the path nft resolves below /sys/fs/cgroup, the cgroup's level in the v2 tree)."""
    full = os.path.join(cgroup2_mount(), path)
    rel = os.path.relpath(full, CGROUP_ROOT)
    if rel.startswith(".."):
        raise HostError(f"cgroup v2 is mounted outside {CGROUP_ROOT}; nft cannot match {path}")
    return rel, len([p for p in path.split("/") if p])


@dataclass(frozen=True, slots=True)
class Dependency:
    ip: str
    port: int

    @property
    def v6(self) -> bool:
        return ipaddress.ip_address(self.ip).version == 6

    @classmethod
    def parse(cls, text: str) -> Dependency:
        ip, _, port = text.rpartition(":")
        return cls(ip.strip("[]"), int(port))


def _chain() -> dict[str, Any]:
    return {
        "add": {
            "chain": {
                "family": "inet",
                "table": NFT_TABLE,
                "name": CHAIN,
                "type": "nat",
                "hook": "output",
                "prio": -100,
                "policy": "accept",
            }
        }
    }


def _match(left: dict[str, Any], right: Any) -> dict[str, Any]:
    return {"match": {"op": "==", "left": left, "right": right}}


def rule_exprs(dep: Dependency, to_port: int) -> list[dict[str, Any]]:
    fam = "ip6" if dep.v6 else "ip"
    return [
        _match({"payload": {"protocol": fam, "field": "daddr"}}, dep.ip),
        _match({"payload": {"protocol": "tcp", "field": "dport"}}, dep.port),
        {"redirect": {"port": to_port}},
    ]


def cgroup_rule_text(dep: Dependency, to_port: int, cgroup: str, tag: str) -> str:
    """The rule in nft's language: its JSON parser (nftables 1.0.6) has no `level` for the
    cgroupv2 socket key."""
    rel, level = nft_cgroup(cgroup)
    fam = "ip6" if dep.v6 else "ip"
    return (
        f"add rule inet {NFT_TABLE} {CHAIN} {fam} daddr {dep.ip} tcp dport {dep.port} "
        f'socket cgroupv2 level {level} "{rel}" redirect to :{to_port} comment "{tag}"'
    )


def _nft_text(cmd: str) -> None:
    import nftables

    rc, _, err = nftables.Nftables().cmd(cmd)
    if rc != 0:
        raise HostError(f"nft refused {cmd[:200]}: {str(err).strip()}")


def _apply_here(deps: list[Dependency], to_port: int, cgroup: str | None, tag: str) -> None:
    cmds: list[dict[str, Any]] = [{"add": {"table": {"family": "inet", "name": NFT_TABLE}}}]
    cmds.append(_chain())
    if cgroup is None:
        for d in deps:
            rule = {"family": "inet", "table": NFT_TABLE, "chain": CHAIN, "comment": tag}
            cmds.append({"add": {"rule": {**rule, "expr": rule_exprs(d, to_port)}}})
    nft_cmd(cmds)
    if cgroup is not None:
        try:
            _nft_text("\n".join(cgroup_rule_text(d, to_port, cgroup, tag) for d in deps))
        except BaseException:
            _remove_here(tag)
            raise


def _tagged_here(tag: str) -> list[dict[str, Any]]:
    table = {"table": {"family": "inet", "name": NFT_TABLE}}
    return [
        x["rule"]
        for x in nft_objects(table)
        if "rule" in x and x["rule"].get("comment") == tag and x["rule"]["chain"] == CHAIN
    ]


def _remove_here(tag: str) -> int:
    rules = _tagged_here(tag)
    delete(
        [
            OwnedRule("nft", "inet", NFT_TABLE, CHAIN, tag, json.dumps(r["expr"]), r["handle"])
            for r in rules
        ]
    )
    return len(rules)


@dataclass
class Redirect:
    """The redirect of one service's connections to its dependencies; remove() undoes it."""

    pid: int
    dependencies: list[Dependency]
    to_port: int
    owner: str = "mocks"
    tag: str = ""
    cgroup: str | None = None
    skipped: list[str] = field(default_factory=list)

    def apply(self) -> Redirect:
        self.tag = self.tag or make_tag(self.owner)
        deps = [d for d in self.dependencies if not d.v6]
        self.skipped = [f"[{d.ip}]:{d.port}" for d in self.dependencies if d.v6]
        if shares_my_netns(self.pid):
            path = cgroup_path(self.pid)
            if not path or path == cgroup_path(os.getpid()):
                raise ConfigError(
                    f"process {self.pid} shares this network namespace and cgroup, so its "
                    "connections cannot be told from others; run it in a cgroup (or a network "
                    "namespace) of its own"
                )
            self.cgroup = path
        in_pid_netns(self.pid, _apply_here, deps, self.to_port, self.cgroup, self.tag)
        return self

    def remove(self) -> int:
        if not self.tag:
            return 0
        return in_pid_netns(self.pid, _remove_here, self.tag)

    def lines(self) -> list[str]:
        where = f"cgroup {self.cgroup}" if self.cgroup else f"the network namespace of {self.pid}"
        out = [
            f"mocks: connections to {d.ip}:{d.port} from {where} go to the responder "
            f"(port {self.to_port})"
            for d in self.dependencies
            if not d.v6
        ]
        out += [f"mocks: {s} not redirected (IPv6 dependencies are not yet)" for s in self.skipped]
        return out

    def __enter__(self) -> Redirect:
        return self.apply()

    def __exit__(self, *exc: object) -> None:
        self.remove()
