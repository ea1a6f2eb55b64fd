"""Foreseeable failures give one actionable line and a non-zero exit, never a traceback."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from agent import loader
from nodetap.errors import NodetapError

REPO = Path(__file__).resolve().parents[2]


def nodetap(*args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "cli", *args]
    if user:
        cmd = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *cmd]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)


def one_line_error(r: subprocess.CompletedProcess[str], needle: str) -> None:
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert any(needle in line for line in lines), r.stderr


@pytest.mark.root
def test_not_root() -> None:
    r = nodetap("capture", "--duration", "1", user="65534")
    one_line_error(r, "must run as root")


def test_bad_flags() -> None:
    one_line_error(nodetap("capture", "--port", "99999"), "out of range")
    one_line_error(nodetap("capture", "--duration", "-3"), "must be positive")
    one_line_error(nodetap("capture", "--format", "xml"), "invalid choice")
    one_line_error(nodetap("capture", "--count", "0"), "--count must be a positive number")
    one_line_error(nodetap("capture", "--max-body", "lots"), "bad size 'lots'; use bytes")


@pytest.mark.root
def test_missing_kernel_headers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform, "release", lambda: "0.0.0-no-such-kernel")
    with pytest.raises(NodetapError, match=r"kernel headers not found for 0\.0\.0.*install"):
        loader.preflight()


@pytest.mark.root
def test_missing_tracepoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loader, "TRACEPOINTS", loader.TRACEPOINTS + ("syscalls:sys_enter_nope",))
    with pytest.raises(NodetapError, match="tracepoint syscalls:sys_enter_nope is missing"):
        loader.preflight()


@pytest.mark.root
def test_unknown_architecture(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform, "machine", lambda: "riscv64")
    with pytest.raises(
        NodetapError, match="syscall numbers of x86_64 and aarch64 only, not of riscv64"
    ):
        loader.preflight()


@pytest.mark.root
def test_bpf_refused_by_the_kernel(monkeypatch: pytest.MonkeyPatch) -> None:
    import bcc

    def refuse(*a: object, **kw: object) -> None:
        raise Exception("Failed to load BPF program: Operation not permitted")

    monkeypatch.setattr(bcc, "BPF", refuse)
    with pytest.raises(NodetapError, match="refused to load BPF programs"):
        loader.load(loader.LoadOptions())


def test_ebpf_flag_prints_the_program() -> None:
    r = nodetap("capture", "--ebpf")
    assert r.returncode == 0
    assert "int nt_sys_exit(" in r.stdout
    assert "NT_EXIT(read)" in r.stdout
    assert "-DNT_RINGBUF_PAGES=4096" in r.stdout
