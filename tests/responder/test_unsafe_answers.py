"""Recorded answers that would split the response in the client (issue 22): CR/LF in a header
value or the reason phrase, a character no byte holds. `nodetap responder` sends a 502 in
their place and counts them; curl (a real client) sees no injected header."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from replay.mocks import Answer, Mock
from replay.responder import unsafe_answer
from tests.replay.helpers import record
from tests.support.servers import free_port, nginx, wait_for_port

ROOT = Path(__file__).resolve().parents[2]


def _edit(line: str, url: str, **res: object) -> str:
    d = json.loads(line)
    d["http"]["req"]["url"] = url
    d["http"]["res"].update(res)
    return json.dumps(d) + "\n"


def test_unsafe_recorded_answers_become_502(tmp_path: Path) -> None:
    with nginx(files={"a": b"a\n"}) as ng:
        one = tmp_path / "one.jsonl"
        record("127.0.0.1", ng.port, [("GET", "/a", [], b"")], one)
    line = one.read_text().splitlines()[0]
    hs = json.loads(line)["http"]["res"]["headers"]
    cap = tmp_path / "deps.jsonl"
    cap.write_text(
        _edit(line, "/ok")
        + _edit(line, "/h", headers=[*hs, {"name": "X-A", "value": "1\r\nX-Injected: yes"}])
        + _edit(line, "/r", statusMessage="OK\r\nX-Injected: yes")
        + _edit(line, "/u", headers=[*hs, {"name": "X-U", "value": "\u2603"}])
    )
    port = free_port()
    report = tmp_path / "report.json"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", "responder", str(cap), "--listen", f"127.0.0.1:{port}"]
        + ["--report", str(report)],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for_port("127.0.0.1", port)
        got = {}
        for path in ("/ok", "/h", "/r", "/u"):
            r = subprocess.run(
                ["curl", "-sS", "-i", f"http://127.0.0.1:{port}{path}"],
                capture_output=True,
                timeout=30,
            )
            got[path] = r.stdout.decode("latin-1")
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    assert got["/ok"].startswith("HTTP/1.1 200") and got["/ok"].endswith("a\n")
    for path in ("/h", "/r", "/u"):
        assert got[path].startswith("HTTP/1.1 502"), got[path]
        assert "X-Injected" not in got[path].split("\r\n\r\n")[0]
        assert "X-Nodetap-Mock: unsafe" in got[path]
    assert json.loads(report.read_text())["unsafe"] == 3
    assert "3 recorded answers not sent" in err


def test_unsafe_answer_reasons() -> None:
    def answer(reason: str, headers: list[tuple[str, str]]) -> Answer:
        return Answer(Mock(200, reason, headers, b"", False), "dep")

    assert unsafe_answer(answer("OK", [("X", "fine\tand\xff")])) is None
    assert unsafe_answer(Answer(None, "dep")) is None
    for a in (
        answer("OK\n", []),
        answer("OK", [("X", "a\rb")]),
        answer("OK", [("X Y", "v")]),
        answer("OK", [("X", "\u2603")]),
    ):
        assert unsafe_answer(a) is not None
