"""One side, once: which RRPairs of a capture a replay sends.

A capture made on one node often holds both sides of an exchange: the server's copy (INBOUND)
and the client's (OUTBOUND), for example on loopback, or in a pod calling another pod of the
same node. Replaying both doubles the load. The rule, per recorded server endpoint (ip:port):
the server's own copy (INBOUND) when the capture has it, else the client's (OUTBOUND), else
the wire's (NETWORK). When the target URL is one of the recorded server endpoints, only the
requests addressed to it are replayed (the exchanges with other services stay out). An
explicit `--direction` keeps that direction only (or every pair: `any`).

Pure functions over the JSON lines (a regex per line, no body parsing); `select_file` streams.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from nodetap.errors import InputError

DIRECTIONS = ("auto", "inbound", "outbound", "network", "any")
PREFERENCE = ("INBOUND", "OUTBOUND", "NETWORK", "DIRECTION_UNSPECIFIED")

_DIR = re.compile(r'"direction"\s*:\s*"(\w+)"')
_SERVER = re.compile(r'"server"\s*:\s*\{([^}]*)\}')
_IP = re.compile(r'"ip"\s*:\s*"([^"]*)"')
_PORT = re.compile(r'"port"\s*:\s*"?(\d+)')
_PID = re.compile(r'"pid"\s*:\s*"?(\d+)')

Key = tuple[str, str]  # (server "ip:port", direction)


def line_key(line: str) -> Key:
    """(server endpoint "ip:port" or "", direction name) of one JSONL line."""
    m = _DIR.search(line)
    direction = m.group(1) if m else "DIRECTION_UNSPECIFIED"
    s = _SERVER.search(line)
    server = ""
    if s:
        ip, port = _IP.search(s.group(1)), _PORT.search(s.group(1))
        server = f"{ip.group(1) if ip else ''}:{port.group(1) if port else '0'}"
    return server, direction


def line_pid(line: str) -> int:
    m = _PID.search(line)
    return int(m.group(1)) if m else 0


@dataclass
class Selection:
    """What to keep: a set of (server, direction) keys, or everything."""

    keep: set[Key] | None  # None: every pair
    counts: Counter[Key] = field(default_factory=Counter)
    reason: str = ""

    def kept(self) -> int:
        if self.keep is None:
            return sum(self.counts.values())
        return sum(n for k, n in self.counts.items() if k in self.keep)

    def wants(self, line: str) -> bool:
        return self.keep is None or line_key(line) in self.keep

    def to_dict(self) -> dict[str, Any]:
        return {
            "kept": self.kept(),
            "skipped": sum(self.counts.values()) - self.kept(),
            "reason": self.reason,
        }


def _endpoint(host: str, port: int) -> str:
    return f"{host}:{port}"


def choose(counts: Counter[Key], direction: str, target_host: str, target_port: int) -> Selection:
    """The keys to replay, from the pairs counted per (server, direction)."""
    if direction not in DIRECTIONS:
        raise InputError(f"--direction {direction!r}: use one of {', '.join(DIRECTIONS)}")
    if direction == "any":
        return Selection(None, counts, "--direction any: every pair")
    if direction != "auto":
        want = direction.upper()
        return Selection(
            {k for k in counts if k[1] == want},
            counts,
            f"--direction {direction}: {want} pairs only",
        )
    servers: dict[str, set[str]] = {}
    for server, d in counts:
        servers.setdefault(server, set()).add(d)
    target = _endpoint(target_host, target_port)
    reason = "one copy per exchange (the server's when captured)"
    if target in servers:
        servers = {target: servers[target]}
        reason = f"requests addressed to {target}, one copy per exchange"
    keep: set[Key] = set()
    for server, ds in servers.items():
        best = next((d for d in PREFERENCE if d in ds), sorted(ds)[0])
        keep.add((server, best))
    if keep == set(counts):
        return Selection(None, counts, "every pair (one side per exchange already)")
    return Selection(keep, counts, reason)


def count_keys(lines: Iterable[str], name: str = "<capture>") -> Counter[Key]:
    """Pairs per (server, direction); InputError for a line that is not a JSON object."""
    c: Counter[Key] = Counter()
    for lineno, line in enumerate(lines, 1):
        text = line.strip()
        if not text:
            continue
        if text[0] != "{" or text[-1] != "}":
            raise InputError(
                f"{name}:{lineno}: not an RRPair (not a JSON object: {text[:40]!r}); "
                "fix or remove that line"
            )
        c[line_key(line)] += 1
    return c


def select_file(
    path: str, direction: str, target_host: str, target_port: int
) -> tuple[str | None, Selection]:
    """Choose the pairs of a capture file to replay. Returns (a temporary file holding only
    those, or None when every pair is kept; the selection). The caller removes the file."""
    try:
        with open(path, encoding="utf-8") as f:
            counts = count_keys(f, path)
    except FileNotFoundError:
        raise InputError(f"capture {path} not found; give a JSONL capture file") from None
    except UnicodeDecodeError:
        raise InputError(f"capture {path} is not UTF-8 JSONL; give a JSONL capture") from None
    sel = choose(counts, direction, target_host, target_port)
    if sel.keep is None:
        return None, sel
    if sel.kept() == 0:
        have = ", ".join(f"{d} to {s or '?'}: {n}" for (s, d), n in sorted(counts.items()))
        raise InputError(
            f"no pair of {path} is selected ({sel.reason}); the capture holds {have}; "
            "give --direction any or another --direction"
        )
    fd, out = tempfile.mkstemp(prefix="nodetap-replay-sel-", suffix=".jsonl")
    # A skipped line becomes a blank one, so that the lines keep their numbers (errors name
    # the line of the capture given).
    with os.fdopen(fd, "w", encoding="utf-8") as w, open(path, encoding="utf-8") as f:
        for line in f:
            w.write(line if line.strip() and sel.wants(line) else "\n")
    return out, sel


def describe(sel: Selection) -> str:
    """One line for stderr: what was kept and why."""
    d = sel.to_dict()
    return f"selection: {d['kept']} pairs replayed, {d['skipped']} skipped ({d['reason']})"
