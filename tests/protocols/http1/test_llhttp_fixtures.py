"""The llhttp parser fixtures (shared/peer-suites/llhttp, beside the repo checkout) run
through nodetap's parsers.

Each fixture case is an HTTP message and the event log llhttp produces for it. A case whose
log has an ``error`` line must be rejected (ParseError); every other case must yield the
method / url / version / status / headers / trailers / body the log lists, the same whether
fed whole (the llhttp fast path where it serves) or one byte at a time (nodetap's own framing).

Out of scope, with the reason in the test id: lenient modes (a strict parser need not accept
what they accept), pausing (llhttp's callback-pause API), skipBody on a request (a callback
API; on responses it is what a HEAD request does, and is tested so), RTSP/ICE start lines and
HTTP/0.9 (not HTTP/1.x). Deviations, tested the other way round: any method token and raw
UTF-8 in a request target are accepted (a capture records what a server took).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent.protocols.http1 import ParseError, RequestParser, ResponseParser
from agent.protocols.http1.types import HttpRequest, HttpResponse

SUITE = Path(__file__).resolve().parents[3] / ".." / "shared" / "peer-suites" / "llhttp"

# llhttp pauses (error codes 22, 23) after a message that switches protocols: not an error.
PAUSE_CODES = {22, 23}


@dataclass
class Expected:
    method: str = ""
    url: str = ""
    protocol: str = ""
    version: str = ""
    status: int = 0
    reason: str = ""
    headers: list[list[str]] = field(default_factory=list)
    trailers: list[list[str]] = field(default_factory=list)
    body: bytes = b""
    complete: bool = False
    in_trailers: bool = False


@dataclass
class Case:
    id: str
    kind: str  # "request" / "response"
    meta: dict[str, object]
    raw: bytes
    messages: list[Expected]
    error: str | None  # reason of a rejecting error line
    upgrade: bool
    finish: int | None  # llhttp_finish() result logged, for "-finish" cases
    skip: str | None = None


# llhttp's md-test turns these escapes into characters, then feeds the text as UTF-8; the
# log prints span text the same way.
_ESC = re.compile(r"\\(x[0-9a-fA-F]{2}|[rntf0])")
_ESC_MAP = {"r": "\r", "n": "\n", "t": "\t", "f": "\f", "0": "\0"}


def _sub(m: re.Match[str]) -> str:
    s = m.group(1)
    return chr(int(s[1:], 16)) if s[0] == "x" else _ESC_MAP.get(s, s)


def _bytes(text: str) -> bytes:
    return _ESC.sub(_sub, text).encode("utf-8")


def _raw(block: list[str]) -> bytes:
    """Lines joined with CRLF, except after a line ending in a backslash (continuation)."""
    text = ""
    for i, line in enumerate(block):
        if line.endswith("\\") and not line.endswith("\\\\"):
            text += line[:-1]
        else:
            text += line + ("\r\n" if i < len(block) - 1 else "")
    return _bytes(text)


def _span_text(value: str) -> str:
    """A logged span as our parser reports it: the wire bytes decoded as latin-1."""
    return _bytes(value).decode("latin-1")


_SPAN = re.compile(r'^off=\d+ len=(\d+) span\[(\w+)\]=(?:"(.*)"|(cr|lf))$')
_HDRS = re.compile(r"headers complete (?:method=\d+|status=(\d+)) v=(\d+)/(\d+)")
_ERR = re.compile(r'error code=(\d+) reason="(.*)"')


def _expected(log: list[str]) -> tuple[list[Expected], str | None, bool, int | None]:
    msgs: list[Expected] = []
    cur: Expected | None = None
    last = ""
    error = None
    upgrade = False
    finish = None
    for line in log:
        if line.endswith("message begin"):
            cur = Expected()
            msgs.append(cur)
            last = ""
            continue
        if (m := _ERR.search(line)) is not None:
            if int(m.group(1)) in PAUSE_CODES:
                upgrade = True
            else:
                error = m.group(2)
            break
        if (m := re.search(r"finish=(\d+)", line)) is not None:
            finish = int(m.group(1))
            continue
        if cur is None:
            continue
        if (m := _SPAN.match(line)) is not None:
            kind = m.group(2)
            value = {"cr": "\r", "lf": "\n"}.get(m.group(4)) or _span_text(m.group(3))
            target = cur.trailers if cur.in_trailers else cur.headers
            if kind == "header_field":
                if last != "header_field":
                    target.append(["", ""])
                target[-1][0] += value
            elif kind == "header_value":
                target[-1][1] += value
            elif kind == "body":
                cur.body += value.encode("latin-1")
            elif kind in ("method", "url", "protocol", "version"):
                setattr(cur, kind, getattr(cur, kind) + value)
            elif kind == "status":
                cur.reason += value
            last = kind
        elif (m := _HDRS.search(line)) is not None:
            if m.group(1):
                cur.status = int(m.group(1))
            cur.in_trailers = True
            last = ""
        elif line.endswith("message complete"):
            cur.complete = True
    return msgs, error, upgrade, finish


def _skip_reason(
    kind: str, meta: dict[str, object], msgs: list[Expected], error: str | None
) -> str | None:
    if "lenient" in kind:
        return "lenient-mode"
    if "pause" in meta:
        return "pausing-api"
    if kind.startswith("request") and meta.get("skipBody"):
        return "skip-body-callback-on-request"
    if any(m.protocol and m.protocol != "HTTP" for m in msgs):
        return "rtsp-ice-not-http1"
    if error is None and any(m.version and m.version not in ("1.0", "1.1") for m in msgs):
        return "http-0.9-not-http1"
    if error is None and any(m.method and not m.protocol for m in msgs):
        return "http-0.9-request-without-version"
    return None


# Deliberate differences from llhttp's strict mode, tested the other way round: a capture
# records what a server accepted, so nodetap takes any method token (custom methods exist;
# llhttp knows a fixed list) and raw UTF-8 in a request target (some clients send it).
DEVIATIONS = {
    "request/invalid/http-protocol-and-announce-method": "any-method-token",
    "request/invalid/invalid-method": "any-method-token",
    "request/uri/disallow-utf-8-in-uri-path-in-strict-mode": "raw-utf8-target",
}


def load_cases() -> list[Case]:
    cases: list[Case] = []
    for path in sorted(SUITE.glob("*/*.md")):
        lines = path.read_text(encoding="utf-8").split("\n")
        title = path.stem
        i = 0
        while i < len(lines):
            line = lines[i]
            if line.startswith("#"):
                title = line.lstrip("#").strip()
            m = re.match(r"<!-- meta=(\{.*\}) -->", line)
            if not m:
                i += 1
                continue
            meta = json.loads(m.group(1))
            kind = str(meta.get("type", path.parent.name))
            i += 1
            blocks: list[list[str]] = []
            while len(blocks) < 2 and i < len(lines):
                if lines[i].startswith("```"):
                    j = i + 1
                    while not lines[j].startswith("```"):
                        j += 1
                    blocks.append(lines[i + 1 : j])
                    i = j
                i += 1
            http, log = blocks
            msgs, error, upgrade, finish = _expected(log)
            base = kind.split("-")[0]
            slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
            cid = f"{path.parent.name}/{path.stem}/{slug}"
            skip = _skip_reason(kind, meta, msgs, error)
            if skip:
                cid += f"[out-of-scope:{skip}]"
            elif cid in DEVIATIONS:
                cid += f"[deviation:{DEVIATIONS[cid]}]"
            cases.append(Case(cid, base, meta, _raw(http), msgs, error, upgrade, finish, skip))
    return cases


CASES = load_cases() if SUITE.is_dir() else []


def _check(msg: HttpRequest | HttpResponse, exp: Expected) -> None:
    assert msg.version == f"HTTP/{exp.version}"
    if isinstance(msg, HttpRequest):
        assert (msg.method, msg.url) == (exp.method, exp.url)
    else:
        assert (msg.status_code, msg.status_message) == (exp.status, exp.reason)
    assert [list(h) for h in msg.headers] == exp.headers
    assert [list(h) for h in msg.trailers] == exp.trailers
    assert msg.body == exp.body


def test_suite_present() -> None:
    if not SUITE.is_dir():
        pytest.skip(f"llhttp fixtures not found at {SUITE} (shared/peer-suites beside the repo)")
    assert len(CASES) > 200


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_llhttp_case(case: Case) -> None:
    if case.skip:
        pytest.skip(f"out of scope: {case.skip}")
    parser: RequestParser | ResponseParser
    if case.kind == "request":
        parser = RequestParser(raise_errors=True)
    else:
        parser = ResponseParser(raise_errors=True)
        if case.meta.get("skipBody"):
            for _ in range(len(case.messages)):
                parser.expect("HEAD")  # llhttp's skipBody is what a HEAD request does
    if "[deviation:" in case.id:
        # accepted where llhttp rejects: one message, its start line as sent
        msgs = parser.feed(case.raw, 1) + parser.close(2)
        assert len(msgs) == 1 and parser.stats.parse_errors == 0
        return
    if case.error is not None:
        with pytest.raises(ParseError):
            parser.feed(case.raw, 1)
            if case.kind == "response" or case.finish is not None:
                parser.close(2)
                assert parser.stats.incomplete == 0
        return
    got: list[HttpRequest | HttpResponse] = list(parser.feed(case.raw, 1))
    # 1xx interim responses are not messages for nodetap (their final response is); llhttp
    # pauses before "message complete" on a PRI request, nodetap returns it and holds the rest
    complete = [
        m
        for m in case.messages
        if (m.complete or (case.upgrade and (m.in_trailers or m.method == "PRI")))
        and (m.status == 101 or not 100 <= m.status <= 199)
    ]
    assert len(got) == len(complete)
    for msg, exp in zip(got, complete, strict=True):
        _check(msg, exp)
        assert msg.flags <= {"upgrade"}
    if case.upgrade:
        if isinstance(parser, RequestParser):
            assert parser.upgrade_pending
        else:
            assert parser.upgraded
    # the same bytes one at a time give the same messages
    one = RequestParser() if case.kind == "request" else ResponseParser()
    if isinstance(one, ResponseParser) and case.meta.get("skipBody"):
        for _ in range(len(case.messages)):
            one.expect("HEAD")
    bytewise: list[HttpRequest | HttpResponse] = []
    for i in range(len(case.raw)):
        bytewise.extend(one.feed(case.raw[i : i + 1], 1))
    assert bytewise == got
    rest = parser.close(2)
    pending = [m for m in case.messages if not m.complete]
    if case.finish is not None:
        # llhttp_finish: 0 = nothing pending, 1 = completed a close-delimited message,
        # 2 = a message was cut short
        assert len(rest) == (case.finish != 0)
        assert all(("incomplete" in m.flags) == (case.finish == 2) for m in rest)
    elif pending and pending[-1].in_trailers and case.kind == "response":
        # a body delimited by the connection close: complete when the stream ends
        assert len(rest) == 1
        _check(rest[0], pending[-1])
