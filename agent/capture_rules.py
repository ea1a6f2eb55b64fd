"""The edge rules inside the core decoder: the capture's RuleEngine (agent/rules/) loads,
validates and reloads the rules file; the core runs them on each RRPair before encoding it
(``nodetap_core.Decoder.set_rules``), so that nothing leaves the core unredacted, HTTP/2
headers and gRPC metadata included.

``CoreRules`` gives the decoder the engine's compiled rules, swaps them when the file
changes (a bad file keeps the old ones: RuleEngine.maybe_reload), and merges the core's
counters into the capture's (``rules_dropped``: dropped or sampled out, ``rules_redacted``)
and into ``nodetap_rule_matches_total{rule}``, as the Python engine counts them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agent.rules.engine import RULE_MATCHES

if TYPE_CHECKING:
    import nodetap_core

    from agent.rules import RuleEngine


class CoreRules:
    """The rules a core decoder runs, kept in step with their engine."""

    def __init__(self, engine: RuleEngine, dec: nodetap_core.Decoder) -> None:
        self.engine = engine
        self._dec = dec
        self._core = engine.core_rules()
        dec.set_rules(self._core)
        self._counts: dict[str, int] = {}
        self._matches: dict[str, int] = {}

    def check_reload(self, stats: dict[str, int]) -> None:
        """A changed rules file, once valid, goes to the core (checked at most once per
        the engine's reload interval)."""
        self.engine.maybe_reload()
        fresh = self.engine.core_rules()
        if fresh is not self._core:
            self.harvest(stats)  # what the old rules counted
            self._core = fresh
            self._counts, self._matches = {}, {}
            self._dec.set_rules(fresh)

    def harvest(self, stats: dict[str, int]) -> None:
        """The core's counters since the last harvest, into stats and the metrics."""
        counts = self._core.counters()
        if counts == self._counts:
            return
        seen = self._counts
        for name, stat in (
            ("rules_dropped", "rules_dropped"),
            ("rules_sampled_out", "rules_dropped"),
            ("rules_redacted", "rules_redacted"),
        ):
            stats[stat] += counts[name] - seen.get(name, 0)
        self._counts = counts
        matches = self._core.rule_matches()
        for rule, n in matches.items():
            if n != self._matches.get(rule, 0):
                RULE_MATCHES.labels(rule).inc(n - self._matches.get(rule, 0))
        self._matches = matches
