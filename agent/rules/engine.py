"""The RuleEngine: drop, sample and redact RRPairs at the node edge, before anything is
written anywhere; reloads its file when it changes and keeps the old rules if the new ones
are bad.

Python loads and validates the rules; two executors run them with the same bytes out
(tests/core/test_rules_differential.py): ``apply`` here (the Python decoder, packet mode,
pcap import), and the compiled core inside the core decoder (``core_rules()``, given to
``nodetap_core.Decoder.set_rules`` by agent/capture_rules.py)."""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field

import nodetap_core
from prometheus_client import Counter

from agent.rules import key as redaction_key
from agent.rules.config import DEFAULT_HEADERS, RedactConfig, RuleError, RuleSet, load, to_json
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


def default_ruleset() -> RuleSet:
    """The rules without a rules file: credentials (DEFAULT_HEADERS) redacted, nothing
    dropped, sampled or searched for."""
    return RuleSet(builtin=[], redact=RedactConfig(patterns=[]), source="<default: credentials>")


class _Compiled:
    def __init__(self, rs: RuleSet, key: bytes) -> None:
        self.ruleset = rs
        self.key = key
        self.core: nodetap_core.Rules | None = None  # the same rules in the core, once asked
        self.drops: list[tuple[str, Predicate]] = [
            (f"builtin:{name}", compile_builtin(name)) for name in rs.builtin
        ] + [(r.name, compile_match(r.match)) for r in rs.drop]
        self.samples: list[tuple[str, Predicate, float]] = [
            (r.name, compile_match(r.match), r.rate) for r in rs.sample
        ]
        self.redactor = Redactor(rs.redact, key)
        red = rs.redact
        # Only headers to redact, by name: an RRPair without them is kept as it is.
        self.headers_only: frozenset[str] | None = (
            frozenset(h.lower() for h in red.headers)
            if not (
                self.drops
                or self.samples
                or red.json_fields
                or red.patterns
                or red.custom
                or red.protobuf_fields
            )
            else None
        )
        have = {h.lower() for h in red.headers}
        self.clear_credentials = [h for h in DEFAULT_HEADERS if h.lower() not in have]

    def compile_core(self) -> nodetap_core.Rules:
        if self.core is None:
            try:
                self.core = nodetap_core.Rules(to_json(self.ruleset), self.key)
            except ValueError as e:  # the checks of config.py should make this impossible
                raise RuleError(f"{self.ruleset.source}: {e}") from None
        return self.core

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
        key: bytes | None = None,
    ) -> None:
        self.path = path
        self.reload_interval = reload_interval
        # No key given: one for this process only (tokens then differ between runs).
        self.key = key if key is not None else redaction_key.ephemeral()
        self._compiled = _Compiled(ruleset, self.key)
        self._core_wanted = False  # a core decoder runs these rules: compile reloads there too
        self._lock = threading.Lock()
        self._stamp = self._file_stamp()
        self._next_check = time.monotonic() + reload_interval
        if announce:
            log.info("rules: active from %s: %s", ruleset.source, self._compiled.describe())
            self._warn_clear(self._compiled)

    @classmethod
    def from_file(
        cls,
        path: str,
        reload_interval: float = 1.0,
        announce: bool = True,
        key: bytes | None = None,
    ) -> RuleEngine:
        try:
            rs = load(path)
        except RuleError as e:
            raise ConfigError(f"bad rules file {e}; fix it (nodetap rules check FILE)") from None
        except RecursionError:  # belt and braces: the YAML limits should prevent it
            raise ConfigError(f"bad rules file {path}: nested too deeply") from None
        return cls(rs, path, reload_interval, announce, key)

    @classmethod
    def defaults(cls, key: bytes | None = None, announce: bool = True) -> RuleEngine:
        """The engine without a rules file: credential headers redacted (default_ruleset)."""
        return cls(default_ruleset(), None, announce=announce, key=key)

    @property
    def headers_only(self) -> frozenset[str] | None:
        """When the rules only redact headers by name (and never change): those names,
        lower case; an RRPair without any of them passes unchanged. Else None."""
        return self._compiled.headers_only if self.path is None else None

    @staticmethod
    def _warn_clear(c: _Compiled) -> None:
        if c.clear_credentials:
            log.warning(
                "rules: %s not redacted (redact.default_headers: false): credentials leave "
                "the node in clear",
                ", ".join(c.clear_credentials),
            )

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
            compiled = _Compiled(load(self.path), self.key)
            if self._core_wanted:
                compiled.compile_core()
        except RuleError as e:
            RULE_RELOADS.labels("error").inc()
            log.error("rules: %s; keeping the previous rules", e)
            return False
        except Exception as e:  # never let a bad file stop the capture
            RULE_RELOADS.labels("error").inc()
            log.error(
                "rules: %s: cannot load (%s: %s); keeping the previous rules",
                self.path,
                type(e).__name__,
                e,
            )
            return False
        with self._lock:
            self._compiled = compiled
        RULE_RELOADS.labels("ok").inc()
        log.info("rules: reloaded %s: %s", self.path, compiled.describe())
        self._warn_clear(compiled)
        return True

    def core_rules(self) -> nodetap_core.Rules:
        """The rules in force, compiled by the core, for a core decoder to run
        (``Decoder.set_rules``); a new object after each reload (then also compiled in the
        core before it is accepted: a file the core refuses keeps the old rules)."""
        self._core_wanted = True
        return self._compiled.compile_core()

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
