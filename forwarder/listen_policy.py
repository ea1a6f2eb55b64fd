"""Who may listen where: off loopback, the forwarder needs TLS and a bearer token.

A forwarder reachable from the pod network without both serves every stored Authorization
and Cookie value to anyone and accepts forged RRPairs that replay then sends. ``check`` refuses
that unless the operator says ``--insecure``; then it logs a warning and sets the metric
``nodetap_forwarder_insecure_listen`` to 1.
"""

from __future__ import annotations

import ipaddress
import logging

from prometheus_client import Gauge

from nodetap.errors import ConfigError

log = logging.getLogger(__name__)

INSECURE = Gauge(
    "nodetap_forwarder_insecure_listen",
    "1 when the forwarder listens off loopback without TLS or without a token (--insecure)",
)


def listen_host(listen: str) -> str:
    """The host part of 'HOST:PORT', '[V6]:PORT', ':PORT' or 'PORT' ('' = every interface)."""
    text = listen.strip()
    if text.isdigit():
        return ""
    host = text.rsplit(":", 1)[0] if ":" in text else text
    return host.strip("[]")


def is_loopback(listen: str) -> bool:
    """True when listen binds loopback only (127.0.0.0/8, ::1, localhost)."""
    host = listen_host(listen).lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # '' (every interface), a hostname: may be reachable from elsewhere
        return False


def check(listen: str, *, tls: bool, token: bool, insecure: bool, what: str = "forwarder") -> None:
    """Refuse a listen address off loopback without TLS and a token, unless insecure."""
    missing = [name for name, ok in (("TLS", tls), ("a token", token)) if not ok]
    if not missing or is_loopback(listen):
        INSECURE.set(0)
        return
    lacks = " and ".join(missing)
    if not insecure:
        raise ConfigError(
            f"refusing to listen on {listen} without {lacks}: anyone on the network could read "
            "every stored RRPair and inject forged ones; give --tls-cert/--tls-key and "
            "--token-file, listen on 127.0.0.1, or pass --insecure"
        )
    INSECURE.set(1)
    log.warning(
        "INSECURE: %s listening on %s without %s (--insecure): anyone who can reach it can "
        "read and write its RRPairs",
        what,
        listen,
        lacks,
    )
