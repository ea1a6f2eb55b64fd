"""Shell completion (shtab) and the man page, generated from the parser (issue 25)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def nodetap(*args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout


def _bash_complete(script: Path, words: str) -> list[str]:
    """What bash's completion offers for `words` (the last one being completed)."""
    parts = words.split()
    cmd = (
        f"source {script}; COMP_WORDS=({words}); COMP_CWORD={len(parts) - 1}; "
        f'COMP_LINE="{words}"; COMP_POINT=${{#COMP_LINE}}; '
        "_shtab_nodetap; printf '%s\\n' \"${COMPREPLY[@]}\""
    )
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_bash_completion_offers_commands_and_flags(tmp_path: Path) -> None:
    script = tmp_path / "nodetap.bash"
    script.write_text(nodetap("completion", "bash"))
    assert "capture" in _bash_complete(script, "nodetap cap")
    assert "--duration" in _bash_complete(script, "nodetap capture --dur")
    assert {"status", "clean"} <= set(_bash_complete(script, "nodetap netsetup ''"))


def test_zsh_completion_is_generated() -> None:
    assert "#compdef nodetap" in nodetap("completion", "zsh")


def test_man_page_renders_with_groff() -> None:
    page = nodetap("man")
    r = subprocess.run(
        ["groff", "-man", "-Tutf8", "-ww", "-z"], input=page, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert r.returncode == 0 and not r.stderr, r.stderr
    text = subprocess.run(
        ["groff", "-man", "-Tascii", "-P-c"], input=page, capture_output=True, text=True,
        timeout=60, check=True,
    ).stdout  # fmt: skip
    assert "NODETAP(1)" in text
    for command in ("capture", "export", "forwarder", "replay", "snapshot"):
        assert command in text
    assert "--duration" in text
