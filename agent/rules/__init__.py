"""Edge rules: filter, sample and redact RRPairs in the agent before anything leaves the node.

``RuleEngine.from_file(path)``, ``engine.apply(pair) -> RRPair | None``,
``engine.maybe_reload()``, ``add_arguments(parser)`` (``--rules FILE``), ``from_args(args)``.
"""

from agent.rules.config import RuleError, RuleSet, load, parse
from agent.rules.engine import Decision, RuleEngine, add_arguments, from_args

__all__ = [
    "Decision",
    "RuleEngine",
    "RuleError",
    "RuleSet",
    "add_arguments",
    "from_args",
    "load",
    "parse",
]
