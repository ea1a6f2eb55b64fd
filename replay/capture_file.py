"""Reading a capture as a stream: a cheap scan (count, first/last time) and the items of one
share of the capture (every n-th pair), each parsed only by the process that replays it."""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

from nodetap import jsonl
from nodetap.errors import InputError
from replay.model import Item, item_from_json, item_from_rrpair

_TS = re.compile(r'"ts"\s*:\s*"([^"]+)"')


@dataclass(slots=True)
class CaptureInfo:
    count: int  # non-blank lines
    first_ts_ns: int
    last_ts_ns: int

    @property
    def span_s(self) -> float:
        return max(0.0, (self.last_ts_ns - self.first_ts_ns) / 1e9)


def _ts_ns(text: str) -> int:
    # RFC 3339 with up to 9 fractional digits and a Z; datetime takes 6, so split the fraction.
    base, _, frac = text.rstrip("Z").partition(".")
    sec = datetime.fromisoformat(base + "+00:00").timestamp()
    return int(sec) * 1_000_000_000 + int((frac + "000000000")[:9])


def scan(path: str) -> CaptureInfo:
    """Count the pairs and find the first and last timestamps without parsing the bodies."""
    count, first, last = 0, 0, 0
    try:
        with open(path, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                count += 1
                m = _TS.search(line, 0, 400) or _TS.search(line)
                if m:
                    try:
                        ts = _ts_ns(m.group(1))
                    except (ValueError, OverflowError):
                        raise InputError(
                            f"{path}:{lineno}: not an RRPair: bad ts {m.group(1)[:40]!r}; "
                            "fix or remove that line"
                        ) from None
                    first = ts if not first else min(first, ts)
                    last = max(last, ts)
    except FileNotFoundError:
        raise InputError(f"capture {path} not found; give a JSONL capture file") from None
    except UnicodeDecodeError:
        raise InputError(f"capture {path} is not UTF-8 JSONL; give a JSONL capture") from None
    return CaptureInfo(count, first, last)


def iter_items(
    path: str,
    share: int = 0,
    shares: int = 1,
    keep_body_limit: int = 64 * 1024,
    summary_only: bool = False,
) -> Iterator[Item]:
    """The replayable items whose index i has i % shares == share, read line by line."""
    i = -1
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            i += 1
            if i % shares != share:
                continue
            item = item_from_line(line, i, f"{path}:{lineno}", keep_body_limit, summary_only)
            if item is not None:
                yield item


def item_from_line(
    line: str, index: int, where: str, keep_body_limit: int = 64 * 1024, summary_only: bool = False
) -> Item | None:
    """The replayable item of one JSONL line; InputError naming `where` for a bad line."""
    try:
        d = json.loads(line)
        return item_from_json(d, index, keep_body_limit, summary_only)
    except (ValueError, TypeError, AttributeError, binascii.Error, RecursionError, OverflowError):
        pass
    # Not the JSON mapping we expect: let protobuf's parser say what is wrong.
    try:
        pair = jsonl.loads(line, where)
        return item_from_rrpair(pair, index, keep_body_limit, summary_only)
    except jsonl.CaptureFormatError as e:
        raise InputError(f"{e}; fix or remove that line") from None
    except (ValueError, TypeError, RecursionError, OverflowError) as e:
        raise InputError(f"{where}: not an RRPair: {e}; fix or remove that line") from None
