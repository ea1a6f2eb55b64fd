"""One syntax for sizes and durations in every command's flags.

Sizes follow the habit of dd, head -c and sort -S: a bare number is bytes; K, M, G, T
(and KiB, MiB, GiB, TiB) are powers of 1024; KB, MB, GB, TB are powers of 1000.
`1M` = `1MiB` = 1048576, `1MB` = 1000000, `2GiB`, `512k`.

Durations: a bare number is seconds; units ms, s, m, h, d, combinable: `500ms`, `10s`,
`5m`, `1h30m`, `7d`, `2.5s`.

The parsers are argparse types: a bad value is a usage error naming the accepted forms.
"""

from __future__ import annotations

import argparse
import re

_SIZE_RE = re.compile(r"^(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?)(i?)(b?)$", re.IGNORECASE)
_POWERS = {"": 0, "k": 1, "m": 2, "g": 3, "t": 4}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s|m|h|d)", re.IGNORECASE)
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}

SIZE_FORMS = "bytes or a unit: 512K, 1M, 2GiB, 100MB"
DURATION_FORMS = "seconds or a unit: 500ms, 10s, 5m, 1h30m, 7d"


def size(text: str) -> int:
    """'1M' -> 1048576, '1MB' -> 1000000, '2GiB', '4096' -> bytes (>= 0)."""
    m = _SIZE_RE.match(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {text!r}; use {SIZE_FORMS}")
    number, prefix, binary, b = m.groups()
    if binary and not prefix:
        raise argparse.ArgumentTypeError(f"bad size {text!r}; use {SIZE_FORMS}")
    power = _POWERS[prefix.lower()]
    base = 1000 if (b and not binary and prefix) else 1024
    return int(float(number) * base**power)


def duration(text: str) -> float:
    """'10s' -> 10.0, '5m' -> 300.0, '1h30m' -> 5400.0, '2.5' -> 2.5 seconds (>= 0)."""
    value = _duration(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, not {text!r}")
    return value


def _duration(text: str) -> float:
    t = text.strip()
    try:
        return float(t)
    except ValueError:
        pass
    parts = _DURATION_PART.findall(t)
    if not parts or "".join(n + u for n, u in parts) != t.replace(" ", ""):
        raise argparse.ArgumentTypeError(f"bad duration {text!r}; use {DURATION_FORMS}")
    return sum(float(n) * _DURATION_UNITS[u.lower()] for n, u in parts)


def positive_duration(text: str) -> float:
    value = _duration(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text!r}")
    return value


def positive_size(text: str) -> int:
    value = size(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, not {text!r}")
    return value
