"""DLP redaction of RRPairs, in place, keeping every length.

Each secret is replaced by a token of the same length derived from HMAC-SHA256(key, secret):
lengths (and so Content-Length and body_size) stay right for replay, and the same secret
always gives the same token, so diffs between captures still line up. No I/O.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from agent.rules.config import RedactConfig
from nodetap.v1 import rrpair_pb2 as pb

_DIGITS = "0123456789"


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _is_card(m: re.Match[str]) -> bool:
    digits = re.sub(r"[ -]", "", m.group(0))
    return 13 <= len(digits) <= 19 and _luhn(digits)


@dataclass(frozen=True, slots=True)
class Pattern:
    """A named regex; `group` is the part replaced; `check` confirms a match (Luhn)."""

    name: str
    regex: re.Pattern[str]
    group: int = 0
    check: Callable[[re.Match[str]], bool] | None = None
    # A cheap test on the text's bytes, true whenever the regex could match: most texts
    # (headers, bodies without secrets) are skipped without running the regex.
    quick: Callable[[bytes], bool] | None = None


# Card numbers, cheaply: digits become "0", spaces and dashes "-", anything else "x"; a card
# number (13-19 digits, a separator at most between two of them) then shows as 0[0-]*0 of
# 13 to 37 characters. A plain-bytes search on that skips texts the full regex would scan slowly.
_CARD_MAP = bytes(
    ord("0") if chr(c).isdigit() and c < 128 else ord("-") if c in b" -" else ord("x")
    for c in range(256)
)
_CARD_SHAPE = re.compile(rb"0[0-]{11,35}0")

BUILTIN_PATTERNS: dict[str, Pattern] = {
    "credit-card": Pattern(
        "credit-card",
        re.compile(r"(?<![0-9])[0-9](?:[ -]?[0-9]){12,18}(?![0-9])"),
        0,
        _is_card,
        lambda raw: _CARD_SHAPE.search(raw.translate(_CARD_MAP)) is not None,
    ),
    "email": Pattern(
        "email",
        re.compile(r"[A-Za-z0-9._%+-]+(?:@|%40)[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"),
        quick=lambda raw: b"@" in raw or b"%40" in raw,
    ),
    "bearer": Pattern(
        "bearer",
        re.compile(r"(?i)\bbearer\s+([A-Za-z0-9\-._~+/]+=*)"),
        1,
        quick=lambda raw: b"bearer" in raw.lower(),
    ),
    "jwt": Pattern(
        "jwt",
        re.compile(r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"),
        quick=lambda raw: b"eyJ" in raw,
    ),
}


class Redactor:
    """Redacts headers by name, JSON body fields by key path, and patterns everywhere."""

    def __init__(self, cfg: RedactConfig) -> None:
        self.key = cfg.hash_key.encode()
        self.headers = {h.lower() for h in cfg.headers}
        self.json_paths = [tuple(p.split(".")) for p in cfg.json_fields]
        self.patterns = [BUILTIN_PATTERNS[n] for n in cfg.patterns] + [
            Pattern(c.name, re.compile(c.regex)) for c in cfg.custom
        ]

    # -- tokens ---------------------------------------------------------------------------------
    def token(self, secret: str, length: int, digits: bool = False) -> str:
        """length characters derived from HMAC(key, secret): hex, or digits for numbers."""
        mac = hmac.new(self.key, secret.encode("latin-1", "replace"), hashlib.sha256).hexdigest()
        text = (mac * (length // 64 + 1))[:length]
        if digits:
            text = "".join(_DIGITS[int(c, 16) % 10] for c in text)
        return text

    def _replace_patterns(self, text: str, hits: set[str]) -> str:
        raw = text.encode("latin-1", "replace")
        for pat in self.patterns:
            if pat.quick is not None and not pat.quick(raw):
                continue
            if pat.regex.search(text) is None:
                continue

            def sub(m: re.Match[str], pat: Pattern = pat) -> str:
                if pat.check is not None and not pat.check(m):
                    return m.group(0)
                hits.add(f"redact:{pat.name}")
                start, end = m.span(pat.group)
                s0 = m.start(0)
                whole = m.group(0)
                secret = whole[start - s0 : end - s0]
                return whole[: start - s0] + self.token(secret, len(secret)) + whole[end - s0 :]

            text = pat.regex.sub(sub, text)
        return text

    # -- JSON fields ------------------------------------------------------------------------------
    def _path_hit(self, path: tuple[str, ...]) -> bool:
        for want in self.json_paths:
            n = len(want)
            # a suffix of the value's path matches the configured path (globs per key)
            for start in range(0, len(path) - n + 1):
                if all(fnmatch.fnmatchcase(path[start + i], want[i]) for i in range(n)):
                    return True
        return False

    def _redact_json(self, text: str, hits: set[str]) -> str:
        spans: list[tuple[int, int, bool]] = []
        try:
            end = _scan(text, _ws(text, 0), (), self._path_hit, spans, False)
        except (ValueError, IndexError):
            return text
        if _ws(text, end) != len(text) or not spans:
            return text
        out, last = [], 0
        for start, stop, is_num in spans:
            out.append(text[last:start])
            if is_num:
                v = text[start:stop]
                sign = "-" if v.startswith("-") else ""
                body = v[len(sign) :]
                tok = self.token(v, len(body), digits=True)
                out.append(sign + ("1" + tok[1:] if tok.startswith("0") and len(tok) > 1 else tok))
            else:  # a string: keep the quotes
                inner = text[start + 1 : stop - 1]
                out.append('"' + self.token(inner, len(inner)) + '"')
            last = stop
        out.append(text[last:])
        hits.add("redact:json-fields")
        return "".join(out)

    # -- one RRPair -------------------------------------------------------------------------------
    def _headers(self, headers: Iterable[pb.Header], hits: set[str]) -> None:
        for h in headers:
            if h.name.lower() in self.headers:
                if h.value:
                    h.value = self.token(h.value, len(h.value))
                    hits.add("redact:headers")
            elif self.patterns:
                h.value = self._replace_patterns(h.value, hits)

    def _body(self, body: bytes, headers: Iterable[pb.Header], hits: set[str]) -> bytes:
        if not body:
            return body
        hdrs = list(headers)
        encoding = next((h.value for h in hdrs if h.name.lower() == "content-encoding"), "")
        if encoding.strip().lower() not in ("", "identity"):
            # Compressed bytes cannot be searched: hash them whole (length kept).
            hits.add("redact:encoded-body")
            text = body.decode("latin-1")
            return self.token(text, len(body)).encode("latin-1")
        text = body.decode("latin-1")
        if self.json_paths:
            ctype = next((h.value for h in hdrs if h.name.lower() == "content-type"), "")
            if "json" in ctype.lower() or text.lstrip()[:1] in ("{", "["):
                text = self._redact_json(text, hits)
        if self.patterns:
            text = self._replace_patterns(text, hits)
        return text.encode("latin-1")

    def redact(self, pair: pb.RRPair) -> list[str]:
        """Redact pair in place; the names of the redaction rules that changed something."""
        hits: set[str] = set()
        if pair.HasField("http"):
            ex = pair.http
            if ex.HasField("req"):
                req = ex.req
                if self.patterns:
                    req.url = self._replace_patterns(req.url, hits)
                self._headers(req.headers, hits)
                self._headers(req.trailers, hits)
                req.body = self._body(req.body, req.headers, hits)
            if ex.HasField("res"):
                res = ex.res
                self._headers(res.headers, hits)
                self._headers(res.trailers, hits)
                res.body = self._body(res.body, res.headers, hits)
        if hits and "redacted" not in pair.flags:
            pair.flags.append("redacted")
        return sorted(hits)


# -- a tiny JSON scanner that reports the spans of scalar values with their key paths ----------
_NUM_RE = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_WS_RE = re.compile(r"[ \t\n\r]*")
_scanstring = json.decoder.scanstring  # type: ignore[attr-defined]


def _ws(s: str, i: int) -> int:
    m = _WS_RE.match(s, i)
    return m.end() if m else i


def _scan(
    s: str,
    i: int,
    path: tuple[str, ...],
    hit: Callable[[tuple[str, ...]], bool],
    spans: list[tuple[int, int, bool]],
    inside: bool,
) -> int:
    """Scan the value at s[i]; append (start, end, is_number) of scalars to redact; return end."""
    selected = inside or (bool(path) and hit(path))
    c = s[i]
    if c == "{":
        i = _ws(s, i + 1)
        if s[i] == "}":
            return i + 1
        while True:
            if s[i] != '"':
                raise ValueError("key expected")
            key, i = _scanstring(s, i + 1)
            i = _ws(s, i)
            if s[i] != ":":
                raise ValueError("colon expected")
            i = _scan(s, _ws(s, i + 1), (*path, key), hit, spans, selected)
            i = _ws(s, i)
            if s[i] == ",":
                i = _ws(s, i + 1)
                continue
            if s[i] == "}":
                return i + 1
            raise ValueError("comma or brace expected")
    if c == "[":
        i = _ws(s, i + 1)
        if s[i] == "]":
            return i + 1
        while True:
            i = _scan(s, i, path, hit, spans, selected)  # arrays are transparent in key paths
            i = _ws(s, i)
            if s[i] == ",":
                i = _ws(s, i + 1)
                continue
            if s[i] == "]":
                return i + 1
            raise ValueError("comma or bracket expected")
    if c == '"':
        _, end = _scanstring(s, i + 1)
        if selected:
            spans.append((i, end, False))
        return int(end)
    m = _NUM_RE.match(s, i)
    if m:
        if selected:
            spans.append((i, m.end(), True))
        return m.end()
    for lit in ("true", "false", "null"):
        if s.startswith(lit, i):
            return i + len(lit)
    raise ValueError("value expected")
