"""Selections of RRPairs: the Filter message, how it matches, and its command-line form.

Pure data model: no I/O. The same ``matches`` serves the live tail, queries and snapshots,
so a client sees the same selection whichever way it asks.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from nodetap.errors import ConfigError
from nodetap.v1 import forwarder_pb2 as fpb
from nodetap.v1 import rrpair_pb2 as pb

_DIRECTIONS = {"inbound": pb.INBOUND, "outbound": pb.OUTBOUND, "network": pb.NETWORK}
FILTER_KEYS = (
    "namespace",
    "pod",
    "node",
    "direction",
    "method",
    "url",
    "status",
    "protocol",
    "label",
)
FILTER_HELP = (
    "KEY=VALUE, repeatable; KEY is one of " + ", ".join(FILTER_KEYS) + "; a comma list means any "
    "of them; url=PREFIX; status=500 or status=500-599 or status=5xx; label=SELECTOR as "
    "kubectl -l (app=web,tier!=db,canary,!legacy: all of them)"
)
_LABEL_KEY = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9._/-]*[A-Za-z0-9])?$")


def label_requirements(selector: str) -> list[str]:
    """kubectl's equality-based selector as requirements: "a=b,c!=d,e,!f" -> four."""
    reqs = []
    for part in selector.split(","):
        req = part.strip().replace("==", "=")
        if not req:
            continue
        key = req.lstrip("!").partition("!=")[0].partition("=")[0].strip()
        if "(" in req or " in " in f" {req} " or not _LABEL_KEY.match(key):
            raise ConfigError(
                f"bad label selector {selector!r}; use key=value, key!=value, key or !key "
                "joined by commas (set-based in/notin is not supported)"
            )
        reqs.append(req)
    return reqs


def _label_holds(req: str, labels: Mapping[str, str]) -> bool:
    if req.startswith("!"):
        return req[1:] not in labels
    if "!=" in req:
        key, _, value = req.partition("!=")
        return labels.get(key) != value
    key, sep, value = req.partition("=")
    if not sep:
        return key in labels
    return labels.get(key) == value


def status_code(pair: pb.RRPair) -> int:
    """Response status of an RRPair (0 when it has none)."""
    if pair.WhichOneof("payload") == "http" and pair.http.HasField("res"):
        return int(pair.http.res.status_code)
    return 0


def method_of(pair: pb.RRPair) -> str:
    if pair.WhichOneof("payload") == "http" and pair.http.HasField("req"):
        return str(pair.http.req.method)
    return ""


def url_of(pair: pb.RRPair) -> str:
    if pair.WhichOneof("payload") == "http" and pair.http.HasField("req"):
        return str(pair.http.req.url)
    return ""


def ts_ns(pair: pb.RRPair) -> int:
    return int(pair.ts.seconds) * 1_000_000_000 + int(pair.ts.nanos)


def range_ns(flt: fpb.Filter) -> tuple[int | None, int | None]:
    """The filter's [since, until) as nanoseconds (None = unbounded)."""
    since = flt.since.ToNanoseconds() if flt.HasField("since") else None
    until = flt.until.ToNanoseconds() if flt.HasField("until") else None
    return since, until


def matches(flt: fpb.Filter, pair: pb.RRPair, *, check_time: bool = True) -> bool:
    """True when pair is selected by flt (empty fields select everything)."""
    meta = pair.meta
    if flt.namespaces and meta.namespace not in flt.namespaces:
        return False
    if flt.pods and meta.pod not in flt.pods:
        return False
    if flt.nodes and meta.node not in flt.nodes:
        return False
    if flt.directions and pair.direction not in flt.directions:
        return False
    if flt.protocols and pair.l7protocol not in flt.protocols:
        return False
    if flt.labels and not all(_label_holds(r, meta.labels) for r in flt.labels):
        return False
    if flt.methods and method_of(pair).upper() not in {m.upper() for m in flt.methods}:
        return False
    if flt.url_prefix and not url_of(pair).startswith(flt.url_prefix):
        return False
    if flt.status_min or flt.status_max:
        code = status_code(pair)
        if flt.status_min and code < flt.status_min:
            return False
        if flt.status_max and code > flt.status_max:
            return False
    if check_time:
        since, until = range_ns(flt)
        t = ts_ns(pair)
        if since is not None and t < since:
            return False
        if until is not None and t >= until:
            return False
    return True


# A duration ago, in the command line's one syntax (cli/options/units.py): 500ms, 10s, 5m,
# 1h30m, 7d (a leading - is allowed: -2h).
_REL_RE = re.compile(r"^-?(?:(?:\d+(?:\.\d*)?|\.\d+)(?:ms|s|m|h|d))+$", re.IGNORECASE)
_REL_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h|d)", re.IGNORECASE)
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def _duration_ago(text: str) -> float | None:
    """Seconds of a duration ("1h30m" -> 5400.0), None when text is not one."""
    if not _REL_RE.match(text):
        return None
    return sum(float(n) * _UNITS[u.lower()] for n, u in _REL_PART.findall(text))


def parse_time(text: str, now: float | None = None) -> int:
    """A time as nanoseconds since the epoch.

    Accepts RFC 3339 ("2026-11-23T04:00:00Z"), Unix seconds ("1795000000.5"), "now", or a
    duration ago ("10m", "-2h", "1h30m", "500ms", "7d").
    """
    t = text.strip()
    now = time.time() if now is None else now
    if t == "now":
        return int(now * 1e9)
    ago = _duration_ago(t)
    if ago is not None:
        return int((now - ago) * 1e9)
    try:
        return int(float(t) * 1e9)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(t.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"bad time {text!r}; use RFC 3339 (2026-11-23T04:00:00Z), Unix seconds, "
            "'now' or a duration ago (10m, 1h30m, 7d)"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1e9)


def _status_range(value: str) -> tuple[int, int]:
    v = value.strip().lower()
    try:
        if re.fullmatch(r"[1-5]xx", v):
            base = int(v[0]) * 100
            return base, base + 99
        if "-" in v:
            lo, hi = v.split("-", 1)
            return int(lo or 0), int(hi or 0)
        return int(v), int(v)
    except ValueError:
        raise ConfigError(f"bad status filter {value!r}; use 404, 500-599 or 5xx") from None


def parse_filters(
    items: Iterable[str], since: str | None = None, until: str | None = None
) -> fpb.Filter:
    """Build a Filter from KEY=VALUE items and optional --since/--until texts."""
    flt = fpb.Filter()
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep or key not in FILTER_KEYS:
            raise ConfigError(f"bad filter {item!r}; use {FILTER_HELP}")
        if key == "label":
            flt.labels.extend(label_requirements(value))
            continue
        values = [v.strip() for v in value.split(",") if v.strip()]
        if key == "namespace":
            flt.namespaces.extend(values)
        elif key == "pod":
            flt.pods.extend(values)
        elif key == "node":
            flt.nodes.extend(values)
        elif key == "method":
            flt.methods.extend(v.upper() for v in values)
        elif key == "protocol":
            flt.protocols.extend(values)
        elif key == "direction":
            for v in values:
                if v.lower() not in _DIRECTIONS:
                    raise ConfigError(f"bad direction {v!r}; use inbound, outbound or network")
                flt.directions.append(_DIRECTIONS[v.lower()])
        elif key == "url":
            flt.url_prefix = value
        elif key == "status":
            flt.status_min, flt.status_max = _status_range(value)
    if since:
        flt.since.FromNanoseconds(parse_time(since))
    if until:
        flt.until.FromNanoseconds(parse_time(until))
    return flt
