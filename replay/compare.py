"""Compare a replayed response with the recorded one: status, headers, body.

Bodies are compared exactly (by hash when the recording kept only a hash), or, when both
sides are JSON, structurally with ignored paths: ``$.ts``, ``$.items[*].id``, ``$..id``
(any depth) for noisy fields such as timestamps and ids.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from replay.model import Expected, Headers

DEFAULT_IGNORE_HEADERS = frozenset(
    {
        "date",
        "server",
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-length",
        "age",
        "expires",
        "last-modified",
        "etag",
        "set-cookie",
        "x-request-id",
        "x-trace-id",
        # set by the client or transport of each run (gRPC's above all): not the service's
        "user-agent",
        "grpc-accept-encoding",
    }
)
# gRPC response fields of the transport, not call metadata: grpc-status and grpc-message are
# compared as the call's status; grpc-encoding is undone (the messages are compared decoded)
GRPC_TRANSPORT = frozenset(
    {"content-type", "content-length", "grpc-status", "grpc-message", "grpc-encoding", "te"}
)
MAX_DIFFS_PER_RESPONSE = 20


@dataclass(slots=True)
class Actual:
    """A replayed response as the client read it."""

    status: int
    headers: Headers
    body: bytes | None  # None when only the hash was kept
    body_sha256: str
    body_size: int
    # a gRPC call: its grpc-status, grpc-message and response messages
    grpc_status: int | None = None
    grpc_message: str = ""
    messages: list[bytes] | None = None
    trailers: Headers | None = None  # a gRPC call's trailing metadata


# (":path" of the call, is_request, message bytes) -> the message as JSON, or None when it
# cannot be rendered (replay/grpc_json.py, with --proto-descriptors)
Render = Callable[[str, bool, bytes], Any]


@dataclass(slots=True)
class Comparer:
    ignore_headers: frozenset[str] = DEFAULT_IGNORE_HEADERS
    ignore_json_paths: list[str] = field(default_factory=list)
    compare_headers: bool = True
    render: Render | None = None

    def compare(self, exp: Expected, act: Actual) -> list[str]:
        """Differences as short lines ('status 200 != 201', 'header x-a: ...', 'body $.a: ...');
        for gRPC calls 'grpc-status: ...', 'message 0: ...' (or 'message 0 $.a: ...')."""
        if exp.grpc_status is not None:
            return self._grpc(exp, act)[:MAX_DIFFS_PER_RESPONSE]
        diffs: list[str] = []
        if exp.status != act.status:
            diffs.append(f"status: recorded {exp.status}, replayed {act.status}")
        if self.compare_headers:
            if exp.norm_headers is None:
                exp.norm_headers = self._norm(exp.headers)
            diffs += self._headers(exp.norm_headers, act.headers)
        diffs += self._body(exp, act)
        return diffs[:MAX_DIFFS_PER_RESPONSE]

    def _grpc(self, exp: Expected, act: Actual) -> list[str]:
        diffs: list[str] = []
        if exp.grpc_status != act.grpc_status:
            diffs.append(
                f"grpc-status: recorded {exp.grpc_status} {exp.grpc_message!r}, "
                f"replayed {act.grpc_status} {act.grpc_message!r}"
            )
        elif exp.grpc_message != act.grpc_message:
            diffs.append(
                f"grpc-message: recorded {exp.grpc_message!r}, replayed {act.grpc_message!r}"
            )
        if self.compare_headers:
            if exp.norm_meta is None:
                exp.norm_meta = self._meta(exp.headers, exp.trailers)
            diffs += _meta_diffs(exp.norm_meta, self._meta(act.headers, act.trailers))
        em, am = exp.messages or [], act.messages or []
        if exp.truncated:  # the recording cut the messages: compare those it kept
            am = am[: len(em)]
        elif len(em) != len(am):
            diffs.append(f"messages: recorded {len(em)}, replayed {len(am)}")
        for i, (e, a) in enumerate(zip(em, am, strict=False)):
            if exp.truncated and i == len(em) - 1:
                a = a[: len(e)]
            diffs += self._message(exp.grpc_path, i, e, a)
        return diffs

    def _message(self, path: str, i: int, e: bytes, a: bytes) -> list[str]:
        if self.render is not None:
            ej, aj = self.render(path, False, e), self.render(path, False, a)
            if ej is not None and aj is not None:
                return [
                    f"message {i} " + d.removeprefix("body ")
                    for d in json_diff(ej, aj, self.ignore_json_paths)
                ]
        if e == a:
            return []
        at = next((k for k, (x, y) in enumerate(zip(e, a, strict=False)) if x != y), None)
        where = f"first at byte {at}" if at is not None else "one is a prefix of the other"
        return [
            f"message {i}: differs, {where} (recorded {len(e)} bytes sha256 "
            f"{digest(e)[:12]}, replayed {len(a)} bytes sha256 {digest(a)[:12]})"
        ]

    def _meta(self, headers: Headers, trailers: Headers | None) -> dict[str, tuple[str, str]]:
        """A gRPC call's metadata: name -> ("header" or "trailer", value). Where a field came
        is kept for the report, not compared: a trailers-only response (an error) carries
        its trailers in the headers, which grpcio does not tell apart."""
        out: dict[str, tuple[str, str]] = {}
        ignore = self.ignore_headers
        for where, hs in (("header", headers), ("trailer", trailers or ())):
            for n, v in hs:
                low = n.lower()
                if low in ignore or low in GRPC_TRANSPORT or low.startswith(":"):
                    continue
                if low.endswith("-bin"):
                    v = _bin_text(v)
                if low in out:
                    w, old = out[low]
                    out[low] = (w, f"{old}, {v}")
                else:
                    out[low] = (where, v)
        return out

    def _norm(self, hs: Headers) -> dict[str, str]:
        out: dict[str, str] = {}
        ignore = self.ignore_headers
        for n, v in hs:
            low = n.lower()
            if low not in ignore and not low.startswith(":"):
                out[low] = f"{out[low]}, {v}" if low in out else v
        return out

    def _headers(self, e: dict[str, str], act: Headers) -> list[str]:
        a = self._norm(act)
        if a == e:
            return []
        diffs = []
        for name in sorted(e.keys() | a.keys()):
            if name not in a:
                diffs.append(f"header {name}: missing (recorded {e[name]!r})")
            elif name not in e:
                diffs.append(f"header {name}: extra {a[name]!r}")
            elif e[name] != a[name]:
                diffs.append(f"header {name}: recorded {e[name]!r}, replayed {a[name]!r}")
        return diffs

    def _body(self, exp: Expected, act: Actual) -> list[str]:
        if exp.truncated:
            if act.body_size != exp.body_size:
                return [f"body size: recorded {exp.body_size}, replayed {act.body_size}"]
            return []
        if exp.body is not None and act.body is not None and self.ignore_json_paths:
            ej, aj = _json(exp.body), _json(act.body)
            if ej is not _NOT_JSON and aj is not _NOT_JSON:
                return json_diff(ej, aj, self.ignore_json_paths)
        if exp.body_sha256 == act.body_sha256:
            return []
        if exp.body is not None and act.body is not None:
            ej, aj = _json(exp.body), _json(act.body)
            if ej is not _NOT_JSON and aj is not _NOT_JSON:
                d = json_diff(ej, aj, [])
                return d or ["body: same JSON, different bytes"]
        return [
            f"body: differs (recorded {exp.body_size} bytes sha256 {exp.body_sha256[:12]}, "
            f"replayed {act.body_size} bytes sha256 {act.body_sha256[:12]})"
        ]


def _bin_text(v: str) -> str:
    """A "-bin" value as unpadded base64, whether recorded in base64 (padded or not) or in
    gRPC's true-binary form (a NUL, then the raw bytes)."""
    if v.startswith("\x00"):
        try:
            return base64.b64encode(v[1:].encode("latin-1")).decode("ascii").rstrip("=")
        except UnicodeEncodeError:
            return v
    return v.rstrip("=")


def _meta_diffs(e: dict[str, tuple[str, str]], a: dict[str, tuple[str, str]]) -> list[str]:
    """'trailer x-sum: recorded '1', replayed '2'', 'header x-v: missing (recorded ...)'."""
    if e == a:
        return []
    diffs = []
    for name in sorted(e.keys() | a.keys()):
        if name not in a:
            diffs.append(f"{e[name][0]} {name}: missing (recorded {e[name][1]!r})")
        elif name not in e:
            diffs.append(f"{a[name][0]} {name}: extra {a[name][1]!r}")
        elif e[name][1] != a[name][1]:
            diffs.append(f"{e[name][0]} {name}: recorded {e[name][1]!r}, replayed {a[name][1]!r}")
    return diffs


_NOT_JSON = object()


def _json(body: bytes) -> Any:
    if not body or body[:1] not in b"{[":
        return _NOT_JSON
    try:
        return json.loads(body)
    except ValueError:
        return _NOT_JSON


def _ignored(path: str, patterns: list[str]) -> bool:
    for p in patterns:
        if p.startswith("$.."):
            if path.endswith("." + p[3:]) or fnmatch.fnmatchcase(path, "$*." + p[3:]):
                return True
        elif fnmatch.fnmatchcase(path, p.replace("[*]", "[[]*[]]")):
            return True
    return False


def json_diff(exp: Any, act: Any, ignore: list[str], path: str = "$") -> list[str]:
    """Structural differences between two JSON values, skipping ignored paths."""
    if _ignored(path, ignore):
        return []
    if isinstance(exp, dict) and isinstance(act, dict):
        out: list[str] = []
        for k in sorted(exp.keys() | act.keys()):
            sub = f"{path}.{k}"
            if _ignored(sub, ignore):
                continue
            if k not in act:
                out.append(f"body {sub}: missing (recorded {_short(exp[k])})")
            elif k not in exp:
                out.append(f"body {sub}: extra {_short(act[k])}")
            else:
                out += json_diff(exp[k], act[k], ignore, sub)
        return out
    if isinstance(exp, list) and isinstance(act, list):
        out = []
        if len(exp) != len(act):
            out.append(f"body {path}: length recorded {len(exp)}, replayed {len(act)}")
        for i, (e, a) in enumerate(zip(exp, act, strict=False)):
            out += json_diff(e, a, ignore, f"{path}[{i}]")
        return out
    if exp != act or type(exp) is not type(act):
        return [f"body {path}: recorded {_short(exp)}, replayed {_short(act)}"]
    return []


def _short(v: Any) -> str:
    s = json.dumps(v)
    return s if len(s) <= 60 else s[:57] + "..."


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
