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
from typing import TypeVar

from agent.rules.config import RedactConfig
from agent.rules.patterns import BUILTIN_PATTERNS, Pattern, custom
from nodetap.v1 import rrpair_pb2 as pb

_DIGITS = "0123456789"
_MAX_JSON_DEPTH = 256  # deeper JSON bodies are hashed whole (the scanner recurses)
# Matches of one pattern in one field (URL, header value, body) that are replaced one by one.
# Each search is linear, but a pattern like `a+b|a` rescans the rest of the text for every
# match: matches x length. From the next match on, the rest of the field is replaced by one
# token (length kept) and the pair flagged redact:capped, so a field costs at most
# MAX_MATCHES + 1 searches. core/src/rules/redact.rs does the same.
MAX_MATCHES = 256
CAPPED_FLAG = "redact-capped"


T = TypeVar("T", str, bytes)


def _secret_bytes(secret: str | bytes) -> bytes:
    if isinstance(secret, bytes):
        return secret
    try:
        return secret.encode("latin-1")  # as captured: header values are decoded as Latin-1
    except UnicodeEncodeError:
        return secret.encode("utf-8", "surrogatepass")


class Redactor:
    """Redacts headers by name, JSON body fields by key path, and patterns everywhere.

    ``key``: the key of the tokens (the installation's key, agent/rules/key.py); a
    ``hash_key`` in the rules file takes precedence."""

    def __init__(self, cfg: RedactConfig, key: bytes) -> None:
        self.key = cfg.hash_key.encode() if cfg.hash_key else key
        self.headers = {h.lower() for h in cfg.headers}
        self.json_paths = [tuple(p.split(".")) for p in cfg.json_fields]
        self.patterns: list[Pattern] = [BUILTIN_PATTERNS[n] for n in cfg.patterns] + [
            custom(c.name, c.regex) for c in cfg.custom
        ]
        # redact.protobuf: gRPC message fields, by the descriptors; run by the core here too
        # (core/src/rules/protobuf.rs), so that both executors write the same bytes
        self._proto = None
        if cfg.protobuf_fields and cfg.protobuf_descriptors:
            import nodetap_core

            only = {
                "redact": {
                    "headers": [],
                    "patterns": [],
                    "protobuf_descriptors": cfg.protobuf_descriptors,
                    "protobuf_fields": cfg.protobuf_fields,
                }
            }
            self._proto = nodetap_core.Rules(json.dumps(only), self.key)

    # -- tokens ---------------------------------------------------------------------------------
    def token(self, secret: str | bytes, length: int, digits: bool = False) -> str:
        """length characters derived from HMAC(key, secret): hex, or digits for numbers."""
        mac = hmac.new(self.key, _secret_bytes(secret), hashlib.sha256).hexdigest()
        text = (mac * (length // 64 + 1))[:length]
        if digits:
            text = "".join(_DIGITS[int(c, 16) % 10] for c in text)
        return text

    def _replace_patterns(self, text: T, hits: set[str]) -> T:
        """text with every span a pattern finds replaced by its token (same length)."""
        raw = text if isinstance(text, bytes) else text.encode("latin-1", "replace")
        for pat in self.patterns:
            if pat.quick is not None and not pat.quick(raw):
                continue
            pieces: list[T] = []
            last = 0
            for n, (start, end) in enumerate(pat.spans(text)):
                if n == MAX_MATCHES:
                    rest = self.token(text[last:], len(text) - last)
                    pieces.append(rest.encode("ascii") if isinstance(text, bytes) else rest)
                    last = len(text)
                    hits.add("redact:capped")
                    break
                pieces.append(text[last:start])
                tok = self.token(text[start:end], end - start)
                pieces.append(tok.encode("ascii") if isinstance(text, bytes) else tok)
                last = end
            if pieces:
                hits.add(f"redact:{pat.name}")
                pieces.append(text[last:])
                text = text[:0].join(pieces)
                raw = text if isinstance(text, bytes) else text.encode("latin-1", "replace")
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
        except _TooDeep:
            # Nested deeper than the scanner follows: a field to redact may be in there.
            hits.add("redact:json-fields")
            return self.token(text, len(text))
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
            return self.token(body, len(body)).encode("ascii")
        if self.json_paths:
            ctype = next((h.value for h in hdrs if h.name.lower() == "content-type"), "")
            if "json" in ctype.lower() or body.lstrip()[:1] in (b"{", b"["):
                body = self._redact_json(body.decode("latin-1"), hits).encode("latin-1")
        if self.patterns:
            body = self._replace_patterns(body, hits)
        return body

    def redact(self, pair: pb.RRPair) -> list[str]:
        """Redact pair in place; the names of the redaction rules that changed something."""
        hits: set[str] = set()
        if self._proto is not None and pair.l7protocol == "grpc" and pair.HasField("grpc"):
            self._protobuf(pair, hits)
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
        if "redact:capped" in hits and CAPPED_FLAG not in pair.flags:
            pair.flags.append(CAPPED_FLAG)
        return sorted(hits)

    def _protobuf(self, pair: pb.RRPair, hits: set[str]) -> None:
        assert self._proto is not None
        out = self._proto.apply(pair.SerializeToString())
        if out is None:
            return
        done = pb.RRPair.FromString(out)
        if done.grpc != pair.grpc:
            pair.grpc.CopyFrom(done.grpc)
            hits.add("redact:protobuf")
            for f in done.flags:
                if f not in pair.flags and f != "redacted":
                    pair.flags.append(f)


# -- a tiny JSON scanner that reports the spans of scalar values with their key paths ----------
# (its two regexes are anchored and unambiguous: linear in Python's re, which, unlike RE2,
# matches at an offset of a str without encoding the whole text again)


class _TooDeep(ValueError):
    """JSON nested deeper than _MAX_JSON_DEPTH."""


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
    depth: int = 0,
) -> int:
    """Scan the value at s[i]; append (start, end, is_number) of scalars to redact; return end."""
    if depth > _MAX_JSON_DEPTH:
        raise _TooDeep
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
            i = _scan(s, _ws(s, i + 1), (*path, key), hit, spans, selected, depth + 1)
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
            i = _scan(s, i, path, hit, spans, selected, depth + 1)  # arrays: transparent in paths
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
