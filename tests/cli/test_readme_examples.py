"""The README's command examples, run as written (issue 25: the README drifted from the
commands). A ```sh block right after a line `<!-- runnable -->` is run with bash
(-euo pipefail) in a fresh folder, with:

- `nodetap` on PATH (this checkout's CLI),
- a real demo service (cli/demo_app.py) listening on $DEMO_PORT ($DEMO_URL), fresh for
  each block, whose pid is $DEMO_PID,
- a forwarder on $FORWARDER (127.0.0.1:PORT) with an empty store, fresh for each block.

Every marked block must exit 0 within its time limit; mark only what runs on one host.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.servers import free_port, wait_for_port

REPO = Path(__file__).resolve().parents[2]
MARK = "<!-- runnable -->"
BLOCK = re.compile(r"^" + re.escape(MARK) + r"\n```sh\n(.*?)^```", re.M | re.S)


def runnable_blocks(text: str) -> list[tuple[int, str]]:
    """(line number, script) of each ```sh block marked runnable."""
    return [(text[: m.start()].count("\n") + 2, m.group(1)) for m in BLOCK.finditer(text)]


def test_blocks_are_found() -> None:
    text = f"a\n{MARK}\n```sh\nnodetap --version\n```\n```sh\nnot this\n```\n"
    assert runnable_blocks(text) == [(3, "nodetap --version\n")]


BLOCKS = runnable_blocks((REPO / "README.md").read_text())


@contextmanager
def _services(tmp: Path) -> Iterator[dict[str, str]]:
    app_port, fwd_port = free_port(), free_port()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        app = subprocess.Popen(
            [sys.executable, "-m", "cli.demo_app", "serve", str(app_port)],
            cwd=REPO, stdout=subprocess.PIPE,
        )  # fmt: skip
        procs.append(app)
        assert app.stdout is not None and app.stdout.readline().strip() == b"ready"
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "cli", "forwarder", "--listen", f"127.0.0.1:{fwd_port}",
             "--data-dir", str(tmp / "forwarder-data")],
            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))  # fmt: skip
        wait_for_port("127.0.0.1", fwd_port, timeout=60)
        yield {
            "DEMO_PORT": str(app_port),
            "DEMO_URL": f"http://127.0.0.1:{app_port}",
            "DEMO_PID": str(app.pid),
            "FORWARDER": f"127.0.0.1:{fwd_port}",
        }
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(timeout=30)


@pytest.mark.skipif(not BLOCKS, reason=f"no ```sh block of README.md is marked {MARK}")
@pytest.mark.parametrize(("line", "script"), BLOCKS, ids=[f"README.md:{n}" for n, _ in BLOCKS])
def test_readme_example_runs(tmp_path: Path, line: int, script: str) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "nodetap"
    shim.write_text(f'#!/bin/sh\nPYTHONPATH={REPO} exec {sys.executable} -m cli "$@"\n')
    shim.chmod(0o755)
    work = tmp_path / "work"
    work.mkdir()
    with _services(tmp_path) as env:
        r = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=work,
            env={**os.environ, **env, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert r.returncode == 0, f"README.md:{line}:\n{script}\n{r.stdout[-3000:]}{r.stderr[-3000:]}"
