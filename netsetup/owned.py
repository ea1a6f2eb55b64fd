"""Everything nodetap may leave on a node, listed and cleaned in one place:
tagged iptables/nft rules (netsetup/rules.py), tc BPF filters named ``nodetap*``
(netsetup/tc_filters.py), and BPF objects pinned under /sys/fs/bpf/nodetap*.

Rules carry their owner's PID and are cleaned when that process is gone. tc filters and pins
carry no PID: ``clean`` removes them when no nodetap process runs (or with ``all_owners``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netsetup import rules, tc_filters
from netsetup.netns import in_netns
from netsetup.rule_model import OwnedRule
from netsetup.tc_filters import TcFilter

BPF_FS = Path("/sys/fs/bpf")
PREFIX = "nodetap"


@dataclass
class Owned:
    rules: list[OwnedRule] = field(default_factory=list)
    tc: list[TcFilter] = field(default_factory=list)
    pins: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [
            f"rule {r.backend} {r.family} {r.table}/{r.chain} [{r.comment}] {r.text}"
            for r in self.rules
        ]
        out += [str(t) for t in self.tc]
        out += [f"pinned {p}" for p in self.pins]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "rules": [
                {
                    "backend": r.backend,
                    "family": r.family,
                    "table": r.table,
                    "chain": r.chain,
                    "comment": r.comment,
                    "rule": r.text,
                }
                for r in self.rules
            ],
            "tc_filters": [str(t) for t in self.tc],
            "pins": self.pins,
        }


def _pins() -> list[str]:
    if not BPF_FS.is_dir():
        return []
    return sorted(str(p) for p in BPF_FS.iterdir() if p.name.startswith(PREFIX))


def _others_running() -> bool:
    """Whether a nodetap process other than this one (and its ancestors) runs."""
    mine = {os.getpid()}
    pid = os.getppid()
    while pid > 1 and pid not in mine:
        mine.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) in mine:
            continue
        with contextlib.suppress(OSError):
            argv = (d / "cmdline").read_bytes().split(b"\0")
            if any(a.endswith(b"/nodetap") or a == b"nodetap" for a in argv[:3]):
                return True
    return False


def _status_here() -> Owned:
    return Owned(rules.owned_here(), tc_filters.bpf_filters(PREFIX), _pins())


def status(netns: str | None = None) -> Owned:
    return in_netns(netns, _status_here)


def _clean_here(all_owners: bool) -> Owned:
    st = _status_here()
    gone = Owned()
    gone.rules = [r for r in st.rules if all_owners or r.dead]
    rules.delete_here(gone.rules)
    if all_owners or not _others_running():
        gone.tc = tc_filters.delete(st.tc)
        for p in st.pins:
            path = Path(p)
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            gone.pins.append(p)
    return gone


def clean(netns: str | None = None, all_owners: bool = False) -> Owned:
    """Remove leftovers (see the module docstring); return what was removed."""
    return in_netns(netns, _clean_here, all_owners)
