"""Captures that would hurt the target or the replay (issue 22): recorded CR/LF smuggling a
second request into the target, malformed lines, a process whose share of a looped capture is
empty. Real nginx as the target, `nodetap replay` as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from replay.model import Item, UnsafeRequest, encode_request
from tests.replay.helpers import record
from tests.support.servers import nginx

ROOT = Path(__file__).resolve().parents[2]


def _replay(
    cap: Path, target: str, *extra: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", "replay", str(cap), "--target", target, "--no-progress",
         "--json", *extra],
        capture_output=True, text=True, cwd=ROOT, timeout=timeout,
    )  # fmt: skip


def _template(port: int, tmp: Path) -> dict[str, Any]:
    one = tmp / "one.jsonl"
    record("127.0.0.1", port, [("GET", "/ok", [("X-Note", "fine")], b"")], one)
    d: dict[str, Any] = json.loads(one.read_text().splitlines()[0])
    return d


def _with(d: dict[str, Any], **req: Any) -> str:
    e = json.loads(json.dumps(d))
    e["http"]["req"].update(req)
    return json.dumps(e) + "\n"


def _logged(ng: Any) -> int:
    """Lines in nginx's access log once the recording's request is in it."""
    deadline = time.monotonic() + 10
    while not ng.access_log_lines() and time.monotonic() < deadline:
        time.sleep(0.05)
    return len(ng.access_log_lines())


SMUGGLED = "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


def test_recorded_crlf_is_never_sent(tmp_path: Path) -> None:
    with nginx(files={"ok": b"ok"}) as ng:
        d = _template(ng.port, tmp_path)
        hs = d["http"]["req"]["headers"]
        cap = tmp_path / "cap.jsonl"
        cap.write_text(
            _with(d)
            + _with(d, headers=[*hs, {"name": "X-A", "value": "v\r\n\r\n" + SMUGGLED}])
            + _with(d, headers=[*hs, {"name": "X-B\r\n\r\n" + SMUGGLED + "X", "value": "v"}])
            + _with(d, url="/ok HTTP/1.1\r\n\r\n" + SMUGGLED + "GET /ok")
            + _with(d, method="GET /smuggled HTTP/1.1\r\n\r\nGET")
            + _with(d, url="/ok?q=a b")
            + _with(d)
        )
        before = _logged(ng)
        proc = _replay(cap, ng.url, "--vusers", "1", "--processes", "1")
        log = ng.access_log_lines(at_least=before + 2)[before:]
    assert proc.returncode == 0, proc.stderr
    assert not any("smuggled" in line for line in log), log
    report = json.loads(proc.stdout)
    assert report["requests"]["sent"] == 2 and len(log) == 2
    assert report["requests"]["not_sent_unsafe"] == {
        "header value": 1,
        "header name": 1,
        "request target": 2,
        "method": 1,
    }
    assert any(
        "not sent: header value" in s.get("error", "") for s in report["comparison"]["samples"]
    )
    # --fail-on errors counts them: they were in the plan and did not go out
    judged = _replay(cap, ng.url, "--vusers", "1", "--processes", "1", "--fail-on", "errors")
    assert judged.returncode == 3, judged.stderr


def test_encode_request_refuses_what_would_split() -> None:
    item = Item(0, "i", 0, 0, "GET", "/a", "HTTP/1.1", [("X", "ok\tobs\xff")], b"", False, None)
    assert encode_request(item, "h", True).startswith(b"GET /a HTTP/1.1\r\nHost: h\r\nX: ok\t")
    for field, value, reason in (
        ("headers", [("X", "a\nb")], "header value"),
        ("headers", [("X", "a\rb")], "header value"),
        ("headers", [("X", "a\x00b")], "header value"),
        ("headers", [("X", "\u2603")], "header value"),
        ("headers", [("X Y", "v")], "header name"),
        ("headers", [("X:", "v")], "header name"),
        ("target", "/a\r\nX: y", "request target"),
        ("target", "/a b", "request target"),
        ("method", "G ET", "method"),
    ):
        bad = Item(0, "i", 0, 0, "GET", "/a", "HTTP/1.1", [], b"", False, None)
        setattr(bad, field, value)
        with pytest.raises(UnsafeRequest) as e:
            encode_request(bad, "h", True)
        assert e.value.reason == reason
    with pytest.raises(UnsafeRequest):  # a --host-map or --set-header given with CR/LF
        encode_request(item, "h\r\nX: y", True)


BAD_LINES = [
    "{not json",
    "[" * 100_000,
    '{"ts": "year 10000", "direction": "INBOUND", "http": {"req": {"method": "GET"}}}',
    '{"direction": "INBOUND", "http": {"req": {"method": "GET", "headers": 7}}}',
    '{"direction": "INBOUND", "http": {"req": {"method": "GET", "body": "!!notbase64"}}}',
    '{"direction": "INBOUND", "http": {"req": {"method": "GET", "url": {"deep": [[[[1]]]]}}}}',
]


def test_malformed_lines_are_one_clear_line(tmp_path: Path) -> None:
    """Each bad line, in a capture selected by side (auto) or not (any), in one or two
    processes: exit 2 and one line naming the line of the given file, no traceback."""
    with nginx(files={"ok": b"ok"}) as ng:
        d = _template(ng.port, tmp_path)
        d["direction"] = "INBOUND"
        for k, bad in enumerate(BAD_LINES):
            cap = tmp_path / f"cap{k}.jsonl"
            server = json.dumps(d["server"])  # addressed to the target: selected
            bad = bad.replace(
                '"direction": "INBOUND"', f'"direction": "INBOUND", "server": {server}'
            )
            cap.write_text(_with(d) + _with(d) + bad + "\n" + _with(d))
            for extra in (("--processes", "2"), ("--direction", "any", "--processes", "1")):
                proc = _replay(cap, ng.url, *extra)
                assert proc.returncode == 2, (bad[:60], extra, proc.stderr)
                assert "Traceback" not in proc.stderr, proc.stderr
                lines = [x for x in proc.stderr.splitlines() if x.startswith("nodetap:")]
                assert len(lines) == 1 and f"{cap}:3" in lines[0], (bad[:60], proc.stderr)


def test_looped_replay_with_an_empty_share_ends(tmp_path: Path) -> None:
    """One pair, two processes: the second process has nothing to send, and must not spin
    through a billion empty passes past the deadline."""
    with nginx(files={"ok": b"ok"}) as ng:
        cap = tmp_path / "cap.jsonl"
        cap.write_text(_with(_template(ng.port, tmp_path)))
        proc = _replay(cap, ng.url, "--loop", "--duration", "3", "--processes", "2", timeout=90)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["requests"]["sent"] > 1 and report["errors"]["total"] == 0
    assert report["plan"]["processes"] == 2
