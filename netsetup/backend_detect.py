"""Which iptables back end a node (a namespace) uses: 'nft' or 'legacy'.

Detected the way kube-proxy does: the back end that holds more rules wins; on a tie, the one
the node's ``iptables`` command uses. NODETAP_IPTABLES=nft|legacy overrides."""

from __future__ import annotations

import logging
import os
import subprocess

from netsetup import legacy_rules
from netsetup.nft_rules import nft_objects

log = logging.getLogger(__name__)

# The tables iptables-nft keeps in nf_tables (families ip and ip6): what iptables-nft-save lists.
XTABLES_NAMES = {"filter", "nat", "mangle", "raw", "security"}


def _nft_iptables_rules() -> int:
    return sum(
        1
        for x in nft_objects({"ruleset": None})
        if "rule" in x
        and x["rule"].get("family") in ("ip", "ip6")
        and x["rule"].get("table") in XTABLES_NAMES
    )


def _legacy_rules() -> int:
    try:
        return legacy_rules.count_rules()
    except Exception as e:  # python-iptables or libiptc unusable here: no legacy rules to see
        log.debug("counting legacy rules: %s", e)
        return 0


def _iptables_default() -> str:
    # The iptables command's own choice (alternatives, a wrapper script) is known only to the
    # command: no library reports it, so ask it (`iptables -V` says "(nf_tables)" or "(legacy)").
    try:
        v = subprocess.run(
            ["iptables", "-V"], capture_output=True, text=True, check=False, timeout=10
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "nft"
    return "legacy" if "legacy" in v else "nft"


def detect_backend() -> str:
    """'nft' or 'legacy' for the calling thread's namespace."""
    env = os.environ.get("NODETAP_IPTABLES", "")
    if env in ("nft", "legacy"):
        return env
    legacy, nft = _legacy_rules(), _nft_iptables_rules()
    if legacy != nft:
        return "legacy" if legacy > nft else "nft"
    return _iptables_default()
