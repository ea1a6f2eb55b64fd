"""--token-file (issue 22): an empty, binary, spaced or huge token file is refused with one
line and exit 2, before anything connects; a good one (a trailing newline is fine) is read as
the token, and a real forwarder accepts it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cli.options.tokens import MAX_TOKEN_BYTES, read_token
from nodetap.errors import ConfigError
from tests.support.servers import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]

BAD = {
    "empty": b"",
    "blank": b" \n\t\n",
    "binary": b"\x00\x89PNG\r\n\x1a\n\xff\xfe",
    "latin1": "s\xe9cret".encode("latin-1"),
    "utf8": "s\u00e9cret".encode(),
    "space": b"two words",
    "newline-inside": b"abc\ndef",
    "huge": b"a" * (MAX_TOKEN_BYTES + 1),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_token_files_are_refused(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "token"
    path.write_bytes(BAD[kind])
    with pytest.raises(ConfigError, match="token file"):
        read_token(str(path))


def test_no_token_file_means_no_token() -> None:
    assert read_token(None) is None


def test_good_token_file_read(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_bytes(b"  Zm9v.YmFy-_~+/=\n")
    assert read_token(str(path)) == "Zm9v.YmFy-_~+/="
    with pytest.raises(ConfigError, match="cannot read token file"):
        read_token(str(tmp_path / "missing"))


def test_cli_refuses_binary_and_empty_token_files_with_one_line(tmp_path: Path) -> None:
    """The commands that take --token-file: a forwarder, a client of it, a replay agent."""
    good = tmp_path / "good"
    good.write_text("s3cret\n")
    port = free_port()
    fwd = subprocess.Popen(
        [sys.executable, "-m", "cli", "forwarder", "--listen", f"127.0.0.1:{port}"]
        + ["--data-dir", str(tmp_path / "data"), "--token-file", str(good)],
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port("127.0.0.1", port)
        for kind in ("empty", "binary"):
            bad = tmp_path / kind
            bad.write_bytes(BAD[kind])
            for argv in (
                ["export", "--forwarder", f"127.0.0.1:{port}", "--token-file", str(bad)],
                ["forwarder", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "d2")]
                + ["--token-file", str(bad)],
                ["replay-agent", "--listen", "127.0.0.1:0", "--allow-target", "127.0.0.1"]
                + ["--token-file", str(bad)],
            ):
                proc = subprocess.run(
                    [sys.executable, "-m", "cli", *argv],
                    capture_output=True,
                    text=True,
                    cwd=ROOT,
                    timeout=60,
                )
                assert proc.returncode == 2, (argv, proc.stderr)
                assert "Traceback" not in proc.stderr
                assert proc.stderr.strip().count("\n") == 0 and "token file" in proc.stderr
        ok = subprocess.run(
            [sys.executable, "-m", "cli", "export", "--forwarder", f"127.0.0.1:{port}"]
            + ["--token-file", str(good)],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
        assert ok.returncode == 0, ok.stderr
    finally:
        fwd.terminate()
        fwd.wait(timeout=15)
