"""Recorded exchanges as mocks: matching a live request to a recorded one.

A request matches a recorded one with the same method, path, query (parameters in any order)
and body; headers are ignored, and in JSON bodies the paths given with --ignore-json-path
(the rule replay's comparison uses: `$.ts`, `$..id`) are left out. Identical requests are
answered in recorded order; past the last recording, the last answer repeats. Mocks are kept
per dependency (the recorded server endpoint "ip:port"): a request whose original destination
is known (redirected by nft DNAT) is answered from that dependency's mocks, any other from
all of them. Pure: no sockets (the server is replay/responder.py).
"""

from __future__ import annotations

import binascii
import hashlib
import json
from collections import Counter, deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from nodetap.errors import InputError
from replay.compare import _ignored
from replay.model import FRAMING, item_from_json, origin_form
from replay.sides import line_key

Key = tuple[str, str, tuple[tuple[str, str], ...], str]  # method, path, query, body digest
ANY = ""  # the table of every dependency


@dataclass(slots=True)
class Mock:
    status: int
    reason: str
    headers: list[tuple[str, str]]  # recorded, framing removed
    body: bytes
    truncated: bool
    # a gRPC call's answer (the responder's HTTP/2 side): grpc-status (None: not gRPC),
    # grpc-message and the response messages
    grpc_status: int | None = None
    grpc_message: str = ""
    messages: list[bytes] = field(default_factory=list)


def grpc_body(messages: Iterable[bytes]) -> bytes:
    """A gRPC call's request messages as the match key's body: each uncompressed, with its
    5-byte prefix (the same bytes whatever compression the caller used)."""
    return b"".join(b"\0" + len(m).to_bytes(4, "big") + m for m in messages)


@dataclass
class _Queue:
    answers: deque[Mock] = field(default_factory=deque)
    last: Mock | None = None

    def take(self) -> Mock | None:
        if self.answers:
            self.last = self.answers.popleft()
        return self.last


def _strip(v: Any, ignore: list[str], path: str = "$") -> Any:
    if isinstance(v, dict):
        return {
            k: _strip(x, ignore, f"{path}.{k}")
            for k, x in v.items()
            if not _ignored(f"{path}.{k}", ignore)
        }
    if isinstance(v, list):
        return [_strip(x, ignore, f"{path}[{i}]") for i, x in enumerate(v)]
    return v


def body_digest(body: bytes, ignore_json_paths: list[str]) -> str:
    """A body's match key: JSON canonicalised without the ignored paths, else the bytes."""
    if body[:1] in (b"{", b"["):
        try:
            value = json.loads(body)
        except ValueError:
            pass
        else:
            canon = json.dumps(_strip(value, ignore_json_paths), sort_keys=True)
            return "json:" + hashlib.sha256(canon.encode()).hexdigest()
    return "raw:" + hashlib.sha256(body).hexdigest()


def request_key(method: str, target: str, body: bytes, ignore_json_paths: list[str]) -> Key:
    u = urlsplit(origin_form(target))
    query = tuple(sorted(parse_qsl(u.query, keep_blank_values=True)))
    return method.upper(), u.path or "/", query, body_digest(body, ignore_json_paths)


def describe_key(key: Key) -> str:
    method, path, query, _ = key
    q = "&".join(f"{k}={v}" for k, v in query)
    return f"{method} {path}" + (f"?{q}" if q else "")


@dataclass
class Answer:
    mock: Mock | None  # None: unmatched
    dependency: str


class MockSet:
    """Recorded exchanges by dependency and request key; counts what was served and missed."""

    def __init__(self, ignore_json_paths: Iterable[str] = ()) -> None:
        self.ignore = list(ignore_json_paths)
        self.tables: dict[str, dict[Key, _Queue]] = {ANY: {}}
        self.recorded: Counter[str] = Counter()
        self.served: Counter[str] = Counter()
        self.unmatched: Counter[str] = Counter()
        self.unmatched_samples: list[str] = []
        # Recorded answers not served because they would split the response (CR/LF in a
        # header or the reason): a 502 went out instead.
        self.unsafe: Counter[str] = Counter()

    def add(self, dependency: str, method: str, target: str, body: bytes, mock: Mock) -> None:
        key = request_key(method, target, body, self.ignore)
        for dep in (dependency, ANY):
            self.tables.setdefault(dep, {}).setdefault(key, _Queue()).answers.append(mock)
        self.recorded[dependency] += 1

    @property
    def dependencies(self) -> list[str]:
        return sorted(d for d in self.tables if d != ANY)

    def __len__(self) -> int:
        return sum(self.recorded.values())

    def answer(
        self, method: str, target: str, body: bytes, original_dst: str | None, host: str | None
    ) -> Answer:
        dep = original_dst if original_dst in self.tables else ANY
        key = request_key(method, target, body, self.ignore)
        q = self.tables[dep].get(key)
        mock = q.take() if q is not None else None
        name = dep or original_dst or host or "unknown"
        if mock is None:
            self.unmatched[name] += 1
            if len(self.unmatched_samples) < 20:
                self.unmatched_samples.append(f"{name}: {describe_key(key)}")
        else:
            self.served[name] += 1
        return Answer(mock, name)

    def known_requests(self, dependency: str, limit: int = 5) -> list[str]:
        table = self.tables.get(dependency) or self.tables[ANY]
        return [describe_key(k) for k in list(table)[:limit]]

    def report(self) -> dict[str, Any]:
        return {
            "recorded": sum(self.recorded.values()),
            "served": sum(self.served.values()),
            "unmatched": sum(self.unmatched.values()),
            "unsafe": sum(self.unsafe.values()),
            "by_dependency": {
                d: {
                    "recorded": self.recorded.get(d, 0),
                    "served": self.served.get(d, 0),
                    "unmatched": self.unmatched.get(d, 0),
                }
                for d in sorted(set(self.recorded) | set(self.served) | set(self.unmatched))
            },
            "unmatched_samples": self.unmatched_samples,
        }


def _lines(path: str) -> Iterator[tuple[int, str]]:
    try:
        with open(path, encoding="utf-8") as f:
            yield from enumerate(f, 1)
    except FileNotFoundError:
        raise InputError(f"capture {path} not found; give a JSONL capture file") from None
    except UnicodeDecodeError:
        raise InputError(f"capture {path} is not UTF-8 JSONL; give a JSONL capture") from None


def load_mocks(
    path: str,
    direction: str = "outbound",
    ignore_json_paths: Iterable[str] = (),
    pids: set[int] | None = None,
) -> MockSet:
    """The mocks of a capture: its exchanges in `direction` (outbound, inbound, network, any),
    only those of the processes `pids` when given."""
    from replay.sides import line_pid

    want = None if direction == "any" else direction.upper()
    ms = MockSet(ignore_json_paths)
    for lineno, line in _lines(path):
        if not line.strip():
            continue
        server, d = line_key(line)
        if want is not None and d != want:
            continue
        if pids is not None and line_pid(line) not in pids:
            continue
        try:
            d = json.loads(line)
            item = item_from_json(d, lineno - 1, keep_body_limit=1 << 62)
        except (ValueError, TypeError, AttributeError, binascii.Error):
            raise InputError(
                f"{path}:{lineno}: not an RRPair JSON line; fix or remove it"
            ) from None
        if item is None or item.expected is None or item.expected.body is None:
            continue
        exp = item.expected
        assert exp.body is not None
        mock = Mock(
            status=exp.status,
            reason=str(d["http"].get("res", {}).get("statusMessage") or ""),
            headers=[(n, v) for n, v in exp.headers if n.lower() not in FRAMING and n[:1] != ":"],
            body=exp.body,
            truncated=exp.truncated,
            grpc_status=exp.grpc_status,
            grpc_message=exp.grpc_message,
            messages=list(exp.messages or ()),
        )
        body = grpc_body(item.messages or ()) if item.proto == "grpc" else item.body
        ms.add(server, item.method, item.target, body, mock)
    return ms
