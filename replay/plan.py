"""A replay plan: what to send, where, how fast. Plain data, JSON-able (sent to remote agents)."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from nodetap.errors import ConfigError
from replay.rewrite import Rules
from replay.sides import DIRECTIONS

TIMINGS = ("original", "asap")
# A name under /run/netns (as `ip netns add` makes them): no "/", not "." or "..".
_NETNS_NAME = re.compile(r"(?!\.{1,2}$)[A-Za-z0-9_.-]{1,64}")
CONNECTIONS = ("keepalive", "close", "as-recorded")


@dataclass
class Plan:
    capture: str
    target: str  # http://host:port
    timing: str = "asap"
    speed: float = 1.0  # --speed 2x: recorded gaps divided by 2 (timing original)
    rate: float | None = None  # --rate N/s: fixed arrival rate, overrides timing
    vusers: int = 16
    duration: float | None = None
    loops: int = 1  # passes over the capture; 0 = until --duration
    connection: str = "keepalive"
    processes: int = 0  # 0 = one per CPU (at most vusers)
    timeout: float = 10.0
    summary_only: bool = False
    keep_body_limit: int = 64 * 1024
    rules: Rules = field(default_factory=Rules)
    ignore_headers: list[str] = field(default_factory=list)
    ignore_json_paths: list[str] = field(default_factory=list)
    compare_headers: bool = True
    netns: str | None = None
    conntrack_threshold: float = 0.8
    conntrack_throttle: bool = True
    max_diffs: int = 50
    direction: str = "auto"  # which copies of an exchange to send: replay/sides.py
    # --target-ca: CA certificate to verify an https:// target with (else the system store)
    target_ca: str | None = None
    # --proto-descriptors: a FileDescriptorSet; gRPC messages compared field by field
    proto_descriptors: str | None = None
    # Set by the coordinator of a distributed run: the capture's first timestamp, so that
    # every agent schedules its share on the same clock.
    ts0_ns: int = 0
    count_hint: int = 0
    span_hint_s: float = 0.0

    def __post_init__(self) -> None:
        if self.timing not in TIMINGS:
            raise ConfigError(f"--timing {self.timing!r}: use one of {', '.join(TIMINGS)}")
        if self.connection not in CONNECTIONS:
            raise ConfigError(
                f"--connection {self.connection!r}: use one of {', '.join(CONNECTIONS)}"
            )
        if self.speed <= 0 or (self.rate is not None and self.rate <= 0):
            raise ConfigError("--speed and --rate must be positive")
        if self.vusers < 1:
            raise ConfigError("--vusers must be at least 1")
        if self.direction not in DIRECTIONS:
            raise ConfigError(f"--direction {self.direction!r}: use one of {', '.join(DIRECTIONS)}")
        if self.loops == 0 and not self.duration:
            raise ConfigError("--loop without a count needs --duration")
        if self.netns and not _NETNS_NAME.fullmatch(self.netns):
            raise ConfigError(
                f"--netns {self.netns!r}: give the name of a namespace (as `ip netns list` "
                "shows it), not a path"
            )
        self.host, self.port = parse_target(self.target)
        self.tls = self.target.startswith("https://")

    @property
    def authority(self) -> str:
        h = f"[{self.host}]" if ":" in self.host else self.host
        return h if self.port == 80 else f"{h}:{self.port}"

    def to_json(self) -> str:
        d = dataclasses.asdict(self)
        d["rules"]["remove_headers"] = sorted(self.rules.remove_headers)
        return json.dumps(d)

    @classmethod
    def from_json(cls, text: str) -> Plan:
        d: dict[str, Any] = json.loads(text)
        r = d.pop("rules", {}) or {}
        rules = Rules(
            host_map=dict(r.get("host_map", {})),
            set_headers=[tuple(x) for x in r.get("set_headers", [])],
            remove_headers=set(r.get("remove_headers", [])),
            tokens=[tuple(x) for x in r.get("tokens", [])],
        )
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(rules=rules, **{k: v for k, v in d.items() if k in known})


def parse_target(url: str) -> tuple[str, int]:
    """host and port of an http:// or https:// URL; ConfigError otherwise. (https: every
    item over TLS, the certificate verified: HTTP/1.x with ALPN http/1.1, HTTP/2 and gRPC
    with ALPN h2.)"""
    if "://" not in url:
        url = "http://" + url
    u = urlsplit(url)
    if u.scheme not in ("http", "https") or not u.hostname:
        raise ConfigError(f"--target {url!r}: give an http://HOST:PORT or https://HOST:PORT URL")
    try:
        port = u.port or (443 if u.scheme == "https" else 80)
    except ValueError:
        raise ConfigError(f"--target {url!r}: bad port") from None
    return u.hostname, port


def parse_rate(text: str) -> float:
    """'500', '500/s', '30000/m' -> requests per second."""
    t = text.strip().lower()
    per = 1.0
    if t.endswith(("/m", "/min")):
        per, t = 60.0, t.split("/")[0]
    elif t.endswith("/s"):
        t = t[:-2]
    try:
        return float(t) / per
    except ValueError:
        raise ConfigError(f"--rate {text!r}: give requests per second, like 500/s") from None


def parse_speed(text: str) -> float:
    """'2x', '0.5', '10X' -> factor."""
    try:
        return float(text.strip().lower().rstrip("x"))
    except ValueError:
        raise ConfigError(f"--speed {text!r}: give a factor like 2x") from None


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False
