"""Progress bars for long work (issue 25): drawn on a terminal, quiet otherwise
(import of a pcap, export of RRPairs to a file, replay against nginx)."""

from __future__ import annotations

import os
import pty
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from nodetap import jsonl
from nodetap.v1 import rrpair_pb2 as pb

REPO = Path(__file__).resolve().parents[2]


def _run(args: list[str], tty: bool) -> tuple[int, bytes]:
    """Run `nodetap ARGS` with stderr on a pseudo-terminal (tty) or a pipe; its stderr."""
    env = dict(os.environ, TERM="xterm", COLUMNS="100")
    env.pop("CI", None)
    if not tty:
        r = subprocess.run(
            [sys.executable, "-m", "cli", *args], cwd=REPO, env=env, capture_output=True,
            timeout=120,
        )  # fmt: skip
        return r.returncode, r.stderr
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli", *args], cwd=REPO, env=env,
        stdout=subprocess.DEVNULL, stderr=slave,
    )  # fmt: skip
    os.close(slave)
    out = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(master)
    return proc.wait(timeout=120), out


def _pcap(path: Path) -> None:
    """An empty classic pcap (Ethernet), enough for the import to run."""
    path.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))


def _jsonl(path: Path, n: int) -> None:
    with path.open("w") as f:
        for i in range(n):
            p = pb.RRPair(id=f"p{i}", l7protocol="http")
            p.http.req.method, p.http.req.url = "GET", f"/{i}"
            p.http.res.status_code = 200
            jsonl.write(f, p)


@pytest.mark.parametrize("tty", [True, False])
def test_import_progress_only_on_a_terminal(tmp_path: Path, tty: bool) -> None:
    _pcap(tmp_path / "c.pcap")
    rc, err = _run(["import", str(tmp_path / "c.pcap"), "-w", str(tmp_path / "o.jsonl")], tty)
    assert rc == 1, err  # no records: exit 1 (README: Packet capture and pcap import)
    assert b"nodetap import: 0 packets" in err
    assert (b"\x1b[" in err) is tty, err  # the bar's control sequences, on a terminal only


@pytest.mark.parametrize("tty", [True, False])
def test_export_progress_only_on_a_terminal(tmp_path: Path, tty: bool) -> None:
    _jsonl(tmp_path / "in.jsonl", 2000)
    out = tmp_path / "out.har"
    rc, err = _run(["export", "-r", str(tmp_path / "in.jsonl"), "-o", "har", "-w", str(out)], tty)
    assert rc == 0, err
    assert b"wrote 2000 RRPairs" in err
    assert (b"\x1b[" in err) is tty, err


@pytest.mark.parametrize("tty", [True, False])
def test_replay_progress_only_on_a_terminal(tmp_path: Path, tty: bool) -> None:
    from tests.support.servers import nginx

    with nginx(files={str(i): b"x" for i in range(300)}) as web:
        _jsonl(tmp_path / "in.jsonl", 300)
        rc, err = _run(
            ["replay", "-r", str(tmp_path / "in.jsonl"), "--target", web.url, "--vusers", "2"], tty
        )
        assert rc == 0, err
        assert len(web.access_log_lines()) == 300
    assert (b"\x1b[" in err) is tty, err


@pytest.mark.parametrize("tty", [True, False])
def test_snapshot_export_progress_only_on_a_terminal(tmp_path: Path, tty: bool) -> None:
    from forwarder.server import serve
    from tests.cli.test_snapshot_cli import _ingest, nodetap

    fwd = serve("127.0.0.1:0", str(tmp_path / "data"))
    try:
        addr = f"127.0.0.1:{fwd.port}"
        _ingest(addr, 2000)
        nodetap("snapshot", "create", "--forwarder", addr, "--name", "all")
        out = tmp_path / "s.har"
        rc, err = _run(["snapshot", "export", "all", "--forwarder", addr, "-w", str(out)], tty)
    finally:
        fwd.stop(0)
    assert rc == 0, err
    assert b"wrote 2000 RRPairs" in err
    assert (b"\x1b[" in err) is tty, err
