"""Drop and sample conditions compiled into predicates over an RRPair (no I/O)."""

from __future__ import annotations

import fnmatch
import hashlib
from collections.abc import Callable

from agent.rules import linear
from agent.rules.config import Match
from nodetap.v1 import rrpair_pb2 as pb

Predicate = Callable[[pb.RRPair], bool]

BUILTIN_RULES: dict[str, tuple[linear.Regex, tuple[str, ...]]] = {
    # (path regex, User-Agent prefixes)
    "health-checks": (
        linear.compile(
            r"^/(healthz|livez|readyz|health|healthcheck|ready|live|ping)/?$",
            case_insensitive=True,
        ),
        ("kube-probe/", "ELB-HealthChecker/", "GoogleHC/"),
    ),
    "metrics-scrapes": (linear.compile(r"^/(metrics|federate)/?$"), ("Prometheus/",)),
}


def header(headers: object, name: str) -> str | None:
    lname = name.lower()
    for h in headers:  # type: ignore[attr-defined]
        if h.name.lower() == lname:
            return str(h.value)
    return None


def path_of(pair: pb.RRPair) -> str:
    url = pair.http.req.url if pair.HasField("http") else ""
    if "://" in url:
        rest = url.split("://", 1)[1]
        url = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
    return url.split("?", 1)[0]


def host_of(pair: pb.RRPair) -> str:
    host = header(pair.http.req.headers, "Host") if pair.HasField("http") else None
    if not host:
        return pair.server.ip
    if host.startswith("["):
        return host[1:].split("]", 1)[0].lower()
    return host.rsplit(":", 1)[0].lower() if host.count(":") == 1 else host.lower()


def _globs(patterns: list[str], value: str, fold: bool = False) -> bool:
    if fold:
        value = value.lower()
        return any(fnmatch.fnmatchcase(value, p.lower()) for p in patterns)
    return any(fnmatch.fnmatchcase(value, p) for p in patterns)


def compile_match(m: Match) -> Predicate:
    """One predicate that holds when every condition of m holds."""
    checks: list[Predicate] = []
    if m.host:
        checks.append(lambda p: _globs(m.host, host_of(p), fold=True))
    if m.port:
        ports = set(m.port)
        checks.append(lambda p: p.server.port in ports)
    if m.path is not None:
        rx = linear.compile(m.path)
        checks.append(lambda p: rx.search(path_of(p)) is not None)
    if m.method:
        methods = set(m.method)
        checks.append(lambda p: p.http.req.method.upper() in methods)
    if m.namespace:
        checks.append(lambda p: _globs(m.namespace, p.meta.namespace))
    if m.pod:
        checks.append(lambda p: _globs(m.pod, p.meta.pod))
    if m.workload:
        checks.append(lambda p: _globs(m.workload, p.meta.workload))
    if m.labels:
        labels = dict(m.labels)

        def has_labels(p: pb.RRPair) -> bool:
            got = p.meta.labels
            return all(k in got and fnmatch.fnmatchcase(got[k], g) for k, g in labels.items())

        checks.append(has_labels)
    return lambda p: all(c(p) for c in checks)


def compile_builtin(name: str) -> Predicate:
    rx, agents = BUILTIN_RULES[name]

    def pred(p: pb.RRPair) -> bool:
        if not p.HasField("http"):
            return False
        if rx.match(path_of(p)):
            return True
        ua = header(p.http.req.headers, "User-Agent") or ""
        return ua.startswith(agents)

    return pred


def sampled_in(rule_name: str, pair_id: str, rate: float) -> bool:
    """Deterministic sampling: the same RRPair id gets the same answer everywhere (so that
    `nodetap rules check` predicts exactly what the agent keeps)."""
    if rate >= 1.0:
        return True
    if rate <= 0.0:
        return False
    h = hashlib.blake2b(f"{rule_name}\0{pair_id}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") < int(rate * 2**64)
