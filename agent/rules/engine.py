"""The RuleEngine: drop, sample and redact RRPairs at the node edge, before anything is
written anywhere; reloads its file when it changes and keeps the old rules if the new ones
are bad."""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field

from prometheus_client import Counter

from agent.rules.config import RuleError, RuleSet, load
from agent.rules.match import Predicate, compile_builtin, compile_match, sampled_in
from agent.rules.redact import Redactor
from nodetap.errors import ConfigError
from nodetap.v1 import rrpair_pb2 as pb

log = logging.getLogger(__name__)

RULE_MATCHES = Counter("nodetap_rule_matches_total", "RRPairs matched by each edge rule", ["rule"])
RULE_RELOADS = Counter("nodetap_rules_reloads_total", "Rules file reloads", ["result"])


@dataclass(slots=True)
class Decision:
    """What the rules do to one RRPair."""

    action: str  # "keep", "drop" or "sample_out"
    rule: str | None = None  # the drop or sample rule that decided (None: no such rule matched)
    redactions: list[str] = field(default_factory=list)  # redaction rules that changed it

    @property
    def matched(self) -> list[str]:
        """Every rule that matched the RRPair (for nodetap_rule_matches_total)."""
        return ([self.rule] if self.rule else []) + self.redactions


class _Compiled:
    def __init__(self, rs: RuleSet) -> None:
        self.ruleset = rs
        self.drops: list[tuple[str, Predicate]] = [
            (f"builtin:{name}", compile_builtin(name)) for name in rs.builtin
        ] + [(r.name, compile_match(r.match)) for r in rs.drop]
        self.samples: list[tuple[str, Predicate, float]] = [
            (r.name, compile_match(r.match), r.rate) for r in rs.sample
        ]
        self.redactor = Redactor(rs.redact)

    def describe(self) -> str:
        rs = self.ruleset
        parts = [f"drop[{', '.join(n for n, _ in self.drops) or '-'}]"]
        parts.append(
            "sample[" + (", ".join(f"{r.name} {r.rate:g}" for r in rs.sample) or "-") + "]"
        )
        red = rs.redact
        what = [f"headers({', '.join(red.headers)})"] if red.headers else []
        if red.json_fields:
            what.append(f"json({', '.join(red.json_fields)})")
        what += red.patterns + [c.name for c in red.custom]
        parts.append(f"redact[{', '.join(what) or '-'}]")
        return " ".join(parts)


class RuleEngine:
    """Apply a rules file to RRPairs; ``apply`` mutates in place (redaction) or returns None."""

    def __init__(
        self,
        ruleset: RuleSet,
        path: str | None = None,
        reload_interval: float = 1.0,
        announce: bool = True,
    ) -> None:
        self.path = path
        self.reload_interval = reload_interval
        self._compiled = _Compiled(ruleset)
        self._lock = threading.Lock()
        self._stamp = self._file_stamp()
        self._next_check = time.monotonic() + reload_interval
        if announce:
            log.info("rules: active from %s: %s", ruleset.source, self._compiled.describe())

    @classmethod
    def from_file(
        cls, path: str, reload_interval: float = 1.0, announce: bool = True
    ) -> RuleEngine:
        try:
            rs = load(path)
        except RuleError as e:
            raise ConfigError(f"bad rules file {e}; fix it (nodetap rules check FILE)") from None
        return cls(rs, path, reload_interval, announce)

    @property
    def ruleset(self) -> RuleSet:
        return self._compiled.ruleset

    def describe(self) -> str:
        return self._compiled.describe()

    # -- reload --------------------------------------------------------------------------------
    def _file_stamp(self) -> tuple[int, int, int] | None:
        if not self.path:
            return None
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def maybe_reload(self, force: bool = False) -> bool:
        """Reload the file if it changed; True when new rules are now in force. A bad file is
        logged with its line and reason, and the previous rules stay in force."""
        if not self.path:
            return False
        now = time.monotonic()
        if not force and now < self._next_check:
            return False
        self._next_check = now + self.reload_interval
        stamp = self._file_stamp()
        if stamp is None or (stamp == self._stamp and not force):
            return False
        self._stamp = stamp
        try:
            rs = load(self.path)
        except RuleError as e:
            RULE_RELOADS.labels("error").inc()
            log.error("rules: %s; keeping the previous rules", e)
            return False
        compiled = _Compiled(rs)
        with self._lock:
            self._compiled = compiled
        RULE_RELOADS.labels("ok").inc()
        log.info("rules: reloaded %s: %s", self.path, compiled.describe())
        return True

    # -- applying -------------------------------------------------------------------------------
    def _decide(self, c: _Compiled, pair: pb.RRPair) -> Decision:
        for name, pred in c.drops:
            if pred(pair):
                return Decision("drop", name)
        for name, pred, rate in c.samples:
            if pred(pair):
                keep = sampled_in(name, pair.id, rate)
                return Decision("keep" if keep else "sample_out", name)
        return Decision("keep")

    def evaluate(self, pair: pb.RRPair) -> Decision:
        """What apply() would do, without changing pair or counting."""
        c = self._compiled
        d = self._decide(c, pair)
        if d.action == "keep":
            copy = pb.RRPair()
            copy.CopyFrom(pair)
            d.redactions = c.redactor.redact(copy)
        return d

    def apply(self, pair: pb.RRPair) -> pb.RRPair | None:
        """The RRPair to keep (redacted in place, flagged "redacted"), or None when a rule
        drops it or samples it out. Checks the file for changes at most once a second."""
        self.maybe_reload()
        c = self._compiled
        d = self._decide(c, pair)
        if d.rule:
            RULE_MATCHES.labels(d.rule).inc()
        if d.action != "keep":
            return None
        for name in c.redactor.redact(pair):
            RULE_MATCHES.labels(name).inc()
        return pair
