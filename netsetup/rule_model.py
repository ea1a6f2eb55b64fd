"""What a nodetap rule is: the NOTRACK rule it asks for, the tag it carries
(``nodetap:<owner>:<pid>``, the process that made it) and a tagged rule found on the node."""

from __future__ import annotations

import ipaddress
import os
import re
from dataclasses import dataclass

TAG = "nodetap"
_TAG_RE = re.compile(r"nodetap:([A-Za-z0-9_.-]+):(\d+)")


def make_tag(owner: str, pid: int | None = None) -> str:
    return f"{TAG}:{owner}:{pid or os.getpid()}"


def parse_tag(comment: str) -> tuple[str, int] | None:
    """(owner, pid) of a nodetap tag, None for anything else."""
    m = _TAG_RE.fullmatch(comment or "")
    return (m.group(1), int(m.group(2))) if m else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
    """A rule tagged as nodetap's, found on the node (status/clean)."""

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

    @property
    def dead(self) -> bool:
        """Whether the process that made it is gone."""
        return self.owner is not None and not pid_alive(self.owner[1])
