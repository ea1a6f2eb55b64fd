"""What the remote replay service lets a caller do: where it listens, which targets it may
replay to, how much one caller may ask of it, and the TLS files it is started with.

Checked by replay/remote_service.py before it serves; the flags are cli/commands/replay_agent.py's.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass

from nodetap.errors import ConfigError


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def split_listen(addr: str) -> tuple[str, int]:
    host, _, port = addr.rpartition(":")
    if not port.isdigit():
        raise ConfigError(f"--listen {addr!r}: give HOST:PORT, like 127.0.0.1:7070")
    return host.strip("[]"), int(port)


class AllowList:
    """Targets the service may send to: host names (exact) and CIDRs."""

    def __init__(self, entries: list[str]) -> None:
        self.nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self.names: set[str] = set()
        for e in entries:
            for part in (p.strip() for p in e.split(",")):
                if not part:
                    continue
                try:
                    self.nets.append(ipaddress.ip_network(part, strict=False))
                except ValueError:
                    self.names.add(part.lower())

    def allows(self, host: str) -> bool:
        if host.lower() in self.names:
            return True
        try:
            ips = [ipaddress.ip_address(host)]
        except ValueError:
            try:
                ips = [ipaddress.ip_address(ai[4][0]) for ai in socket.getaddrinfo(host, None)]
            except OSError:
                return False
        return bool(ips) and all(any(ip in n for n in self.nets) for ip in ips)

    def __str__(self) -> str:
        return ", ".join([*map(str, self.nets), *sorted(self.names)]) or "(nothing)"


@dataclass(frozen=True)
class Limits:
    """What one caller may ask of this service."""

    max_processes: int = max(1, os.cpu_count() or 1)  # replay processes per run
    max_vusers: int = 1024  # virtual users per run
    max_upload_bytes: int = 1 << 30  # the pairs of one run, as received
    max_runs: int = 4  # runs at once


def check_tls_files(cert: str, key: str) -> None:
    """ConfigError unless cert and key are readable PEM files that belong together (grpc would
    otherwise fail later, or abort the process, with a message about neither)."""
    import ssl

    for path, flag in ((cert, "--tls-cert"), (key, "--tls-key")):
        try:
            with open(path, "rb"):
                pass
        except OSError as e:
            raise ConfigError(
                f"cannot read {flag} {path}: {e.strerror}; give the PEM file (on Kubernetes, "
                "the Secret mounted there must hold tls.crt and tls.key)"
            ) from None
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)
    except (ssl.SSLError, ValueError) as e:
        raise ConfigError(
            f"--tls-cert {cert} and --tls-key {key} are not a PEM certificate and its key ({e}); "
            "give the pair the agent's certificate was made with"
        ) from None
