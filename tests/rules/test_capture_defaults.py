"""The edge rules in a real capture (issue 22): with defaults (no --rules), credentials sent
by curl to nginx, and nginx's Set-Cookie, are in no file the agent or the forwarder writes
(the local output, the sink's spool, the forwarder's store),
every such RRPair flagged "redacted" (--no-redact: tests/rules/test_defaults.py); a rules file
overwritten with deeply nested YAML or an alias bomb is refused while the capture goes on
with the old rules (before: RecursionError killed the capture)."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
from pathlib import Path

import pytest

from nodetap import jsonl
from tests.forwarder.helpers import grep_dir, start_capture, start_forwarder, stop, stored
from tests.rules.test_yaml_limits import DEEP, _bomb
from tests.support.servers import free_port, nginx

pytestmark = [pytest.mark.bpf, pytest.mark.root, pytest.mark.slow]

BEARER = "rules22-bearer-7f3a9c1e5d"
COOKIE = "rules22-cookie-2b8e4d6f0a"
PROXY = "rules22-proxy-9d1c3b5a7e"
SET_COOKIE = "rules22-setcookie-4e6a8c0b2d"
NEEDLES = [s.encode() for s in (BEARER, COOKIE, PROXY, SET_COOKIE)]
SET_COOKIE_CONF = f'location /login {{ add_header Set-Cookie "sid={SET_COOKIE}"; return 200; }}'


def _curl(url: str, n: int) -> None:
    subprocess.run(
        [
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-H",
            f"Authorization: Bearer {BEARER}",
            "-H",
            f"Cookie: session={COOKIE}",
            "-H",
            f"Proxy-Authorization: Basic {PROXY}",
            *[f"{url}/login?i={i}" for i in range(n)],
        ],
        check=True,
        timeout=60,
    )


def _finish(cap: subprocess.Popen[str]) -> str:
    assert cap.stderr is not None
    try:
        cap.wait(timeout=90)
    finally:
        stop(cap, signal.SIGINT)
    return cap.stderr.read()


def test_defaults_keep_credentials_out_of_every_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 5
    key_file = tmp_path / "keys" / "redaction.key"
    monkeypatch.setenv("NODETAP_REDACTION_KEY_FILE", str(key_file))
    data, spool = tmp_path / "data", tmp_path / "spool"
    local = tmp_path / "local.jsonl"
    port = free_port()
    with nginx(extra=SET_COOKIE_CONF) as web:
        fwd = start_forwarder(port, data)
        try:
            cap = start_capture(
                "--port",
                str(web.port),
                "--count",
                str(2 * n),
                "--duration",
                "60",
                "--forwarder",
                f"127.0.0.1:{port}",
                "--spool-dir",
                str(spool),
                "-o",
                str(local),
            )
            _curl(web.url, n)
            summary = _finish(cap)
            assert cap.returncode == 0, summary
        finally:
            stop(fwd)
    pairs = list(jsonl.read_path(str(local)))
    assert len(pairs) == 2 * n
    assert all("redacted" in p.flags for p in pairs)
    auth = {h.name: h.value for h in pairs[0].http.req.headers}["Authorization"]
    assert len(auth) == len(f"Bearer {BEARER}")  # a token of the same length
    assert len(stored(data)) == 2 * n
    for where in (local, data, spool):
        if where.exists():
            assert grep_dir(where, NEEDLES) == {}, where
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700


def _wait_lines(path: Path, n: int, timeout: float = 30) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = path.read_text().splitlines() if path.exists() else []
        if len(lines) >= n:
            return lines
        time.sleep(0.1)
    raise AssertionError(f"expected {n} lines in {path}, got {len(lines)}")


def test_bad_live_reloads_are_refused_while_capture_goes_on(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("drop:\n  - {name: no-drop, path: ^/drop}\n")
    out = tmp_path / "out.jsonl"

    def get(*paths: str) -> None:
        urls = [web.url + p for p in paths]
        subprocess.run(["curl", "-sS", "-o", "/dev/null", *urls], check=True, timeout=30)

    with nginx() as web:
        cap = start_capture(
            "--port", str(web.port), "--rules", str(rules), "-o", str(out),
        )  # fmt: skip
        try:
            get("/drop/1", "/hello?phase=0")
            _wait_lines(out, 2)  # both sides of /hello?phase=0
            for i, bad in enumerate((DEEP, _bomb()), start=1):
                rules.write_text(bad)
                os.utime(rules, ns=(1, i * 10**18))
                time.sleep(1.2)  # past the reload interval: the next RRPair reloads
                get("/drop/2", f"/hello?phase={i}")
                get(f"/hello?phase={i}")
                lines = _wait_lines(out, 2 + 4 * i)
                assert cap.poll() is None, "the capture stopped"
        finally:
            stop(cap, signal.SIGINT)
        assert cap.stderr is not None
        err = cap.stderr.read()
    assert cap.returncode == 0, err
    assert err.count("keeping the previous rules") == 2, err
    assert "nested deeper than" in err and "alias bomb" in err and "Traceback" not in err
    urls = sorted(json.loads(line)["http"]["req"]["url"] for line in lines)
    assert urls == sorted(f"/hello?phase={i}" for i in (0, 0, 1, 1, 1, 1, 2, 2, 2, 2))
