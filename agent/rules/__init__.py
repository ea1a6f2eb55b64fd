"""Edge rules: filter, sample and redact RRPairs in the agent before anything leaves the node.

``RuleEngine.from_file(path)``, ``engine.apply(pair) -> RRPair | None``,
``engine.maybe_reload()``. The ``--rules FILE`` flag is cli/options/rules.py.
"""

from agent.rules.config import RuleError, RuleSet, load, parse
from agent.rules.engine import Decision, RuleEngine

__all__ = [
    "Decision",
    "RuleEngine",
    "RuleError",
    "RuleSet",
    "load",
    "parse",
]
