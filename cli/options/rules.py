"""--rules FILE, --redaction-key FILE and --no-redact: the agent's edge rules (agent/rules/),
for `nodetap capture`. Without --rules, credentials are redacted all the same."""

from __future__ import annotations

import argparse
import sys

from agent.rules import RuleEngine
from agent.rules import key as redaction_key
from agent.rules.config import DEFAULT_HEADERS
from nodetap.errors import ConfigError

NO_REDACT_WARNING = (
    "nodetap: warning: --no-redact: credentials ({}) are written and sent in clear"
).format(", ".join(DEFAULT_HEADERS))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """--rules FILE, --redaction-key FILE, --no-redact."""
    parser.add_argument(
        "--rules",
        metavar="FILE",
        help="edge rules (YAML): drop, sample and redact before anything leaves the node; "
        "reloaded on change (check a file with: nodetap rules check FILE). Without it, the "
        f"credential headers ({', '.join(DEFAULT_HEADERS)}) are redacted",
    )
    parser.add_argument(
        "--redaction-key",
        metavar="FILE",
        help="the secret key of the redaction tokens (16 bytes or more; on Kubernetes a "
        "Secret); default: $NODETAP_REDACTION_KEY_FILE, else /var/lib/nodetap/redaction.key "
        "(root) or ~/.config/nodetap/redaction.key, created 0600 on first use",
    )
    parser.add_argument(
        "--no-redact",
        action="store_true",
        help="write and send credentials in clear (no --rules: nothing is redacted); "
        "prints a warning",
    )


def from_args(args: argparse.Namespace) -> RuleEngine | None:
    """The RuleEngine of --rules, or of the defaults (credentials redacted); None only with
    --no-redact (after its warning on stderr)."""
    path = getattr(args, "rules", None)
    if getattr(args, "no_redact", False):
        if path:
            raise ConfigError(
                "--no-redact and --rules: give one (a rules file says what it redacts; "
                "redact: {default_headers: false} shows credentials)"
            )
        print(NO_REDACT_WARNING, file=sys.stderr)
        return None
    key = redaction_key.load(getattr(args, "redaction_key", None))
    if path:
        return RuleEngine.from_file(path, key=key)
    return RuleEngine.defaults(key=key, announce=False)
