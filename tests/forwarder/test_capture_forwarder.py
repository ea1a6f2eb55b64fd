"""`nodetap capture --forwarder` on real nginx traffic: every exchange reaches the forwarder
exactly once, even across a kill -9 of the forwarder in the middle of the capture, redacted by
the edge rules before it leaves the capture process."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.forwarder.helpers import (
    CountedClient,
    capture_to_forwarder,
    grep_dir,
    start_forwarder,
    stop,
    stored,
)
from tests.support.servers import free_port, nginx

pytestmark = [pytest.mark.bpf, pytest.mark.root, pytest.mark.slow]

SECRET = "capture-e2e-bearer-0a1b2c3d4e5f"


def test_capture_streams_redacted_pairs_across_a_forwarder_kill9(tmp_path: Path) -> None:
    n = 60
    rules = tmp_path / "rules.yaml"
    rules.write_text("drop:\n  - {name: no-favicon, path: ^/favicon}\n")
    data, spool = tmp_path / "data", tmp_path / "spool"
    port = free_port()
    with nginx() as web:
        fwd = start_forwarder(port, data)
        cap = capture_to_forwarder(
            web.port, 2 * n, f"127.0.0.1:{port}", tmp_path, "--rules", str(rules)
        )
        cli = None
        try:
            assert cap.stderr is not None
            cli = CountedClient(web.url, n, SECRET, favicon=True)
            cli.wait_for(n // 3)
            fwd.send_signal(signal.SIGKILL)  # mid-capture
            fwd.wait()
            cli.wait_for(n // 2)
            fwd = start_forwarder(port, data)
            cli.wait(timeout=60)
            cap.wait(timeout=60)
            summary = cap.stderr.read()
        finally:
            if cli is not None:
                cli.stop()
            stop(cap, signal.SIGINT)
            stop(fwd)
        assert cap.returncode == 0, summary
        assert len(web.access_log_lines()) == n + 1
    pairs = stored(data)
    # inbound (nginx) and outbound (the client) of each request, each exactly once
    assert len(pairs) == 2 * n and len({p.id for p in pairs}) == 2 * n
    assert sorted(p.http.req.url for p in pairs) == sorted(
        f"/hello?i={i}" for i in range(n) for _ in (0, 1)
    )
    assert all("redacted" in p.flags for p in pairs)
    needles = [SECRET.encode()]
    assert (tmp_path / "local.jsonl").stat().st_size > 0
    assert grep_dir(data, needles) == {} and grep_dir(tmp_path / "local.jsonl", needles) == {}
    if spool.exists():
        assert grep_dir(spool, needles) == {}
