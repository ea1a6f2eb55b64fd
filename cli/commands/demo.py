"""`nodetap demo`: the main job end to end on one host, with real processes.

A demo service and real clients on loopback; `nodetap capture` streams what the service
saw into an embedded forwarder; the stored capture is exported, then replayed against a
fresh instance of the service, and the report printed. Every step is one of nodetap's
own commands, run as a user would run it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cli.table import HEADER, format_row
from nodetap import jsonl
from nodetap.errors import HostError, NodetapError

EPILOG = """\
examples:
  nodetap demo                      # everything in a new temporary folder
  nodetap demo --workdir ./demo     # keep the files there
"""

HEY_REQUESTS = 200


def register(sub: Any) -> None:
    p = sub.add_parser(
        "demo",
        help="run the main job end to end on this host (capture, stream, store, replay)",
        description=__doc__,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--workdir", metavar="DIR", help="where the files go (default: a temp dir)")
    p.add_argument("--rows", type=int, default=25, help="table rows to show (default 25)")
    p.set_defaults(func=run)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _nodetap(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli", *args]


def _step(n: int, text: str) -> None:
    print(f"\n== {n}. {text}", flush=True)


class Processes:
    """Child processes of the demo, ended by PID whatever happens."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, cmd: list[str], **kw: Any) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(cmd, **kw)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return int(proc.returncode)

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc)


@contextlib.contextmanager
def _processes() -> Iterator[Processes]:
    procs = Processes()
    try:
        yield procs
    finally:
        procs.stop_all()


def _start_app(procs: Processes, port: int) -> subprocess.Popen[bytes]:
    app = procs.start(
        [sys.executable, "-m", "cli.demo_app", "serve", str(port)], stdout=subprocess.PIPE
    )
    assert app.stdout is not None
    if app.stdout.readline().strip() != b"ready":
        raise NodetapError("the demo service did not start")
    return app


def _wait_line(path: Path, needle: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and needle in path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise NodetapError(f"nodetap capture exited early:\n{path.read_text(errors='replace')}")
        time.sleep(0.1)
    raise NodetapError(f"nodetap capture did not start within {timeout:.0f}s")


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path, timeout: float) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise NodetapError(f"the forwarder exited early:\n{log.read_text(errors='replace')}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise NodetapError(f"the forwarder did not listen on port {port} within {timeout:.0f}s")


def _run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, text=True, capture_output=True, timeout=300, **kw)


# What a demo run writes in its folder: removed before each run, so that a second run in the
# same --workdir starts from an empty store (nothing else in the folder is touched).
OWN_DIRS = ("forwarder", "spool")
OWN_FILES = (
    "forwarder.log",
    "capture.log",
    "capture.jsonl",
    "capture-summary.json",
    "stored.jsonl",
    "capture.har",
    "replay-report.json",
)


def _fresh(work: Path) -> None:
    for name in OWN_DIRS:
        shutil.rmtree(work / name, ignore_errors=True)
    for name in OWN_FILES:
        (work / name).unlink(missing_ok=True)


def run(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        raise HostError("the demo captures with BPF and must run as root (try: sudo nodetap demo)")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="nodetap-demo-"))
    work.mkdir(parents=True, exist_ok=True)
    _fresh(work)
    app_port, fwd_port = _free_port(), _free_port()
    fwd = f"127.0.0.1:{fwd_port}"
    target = f"http://127.0.0.1:{app_port}"
    with _processes() as procs:
        _step(1, f"demo service on {target}, embedded forwarder on {fwd}")
        app = _start_app(procs, app_port)
        forwarder = procs.start(
            _nodetap("forwarder", "--listen", fwd, "--data-dir", str(work / "forwarder")),
            stdout=subprocess.DEVNULL,
            stderr=open(work / "forwarder.log", "w"),  # noqa: SIM115
        )
        _wait_port(fwd_port, forwarder, work / "forwarder.log", timeout=60)

        _step(2, f"nodetap capture -p {app.pid} --forwarder {fwd} (BPF syscall tracepoints)")
        cap_log = work / "capture.log"
        capture = procs.start(
            _nodetap(
                "capture",
                "-p",
                str(app.pid),
                "--forwarder",
                fwd,
                "--spool-dir",
                str(work / "spool"),
                "-w",
                str(work / "capture.jsonl"),
                "--summary-json",
                str(work / "capture-summary.json"),
            ),
            stdout=subprocess.DEVNULL,
            stderr=open(cap_log, "w"),  # noqa: SIM115
        )
        _wait_line(cap_log, "capturing", capture, timeout=60)

        _step(3, "real client traffic: a Python client, curl and hey")
        sent = int(_run([sys.executable, "-m", "cli.demo_app", "drive", target]).stdout)
        curls = [
            ["curl", "-s", f"{target}/api/items"],
            ["curl", "-s", "-X", "POST", "-H", "Content-Type: application/json",
             "-d", '{"name": "from-curl", "price": 5}', f"{target}/api/items"],
            ["curl", "-s", f"{target}/api/report"],
        ]  # fmt: skip
        for cmd in curls:
            _run(cmd, check=True)
        sent += len(curls)
        _run(["hey", "-n", str(HEY_REQUESTS), "-c", "4", f"{target}/api/items/1"], check=True)
        sent += HEY_REQUESTS
        print(f"sent {sent} requests")

        time.sleep(0.5)  # let the last records reach the agent
        procs.stop(capture, signal.SIGINT)
        print(cap_log.read_text().strip())
        pairs = list(jsonl.read_path(str(work / "capture.jsonl")))
        summary = json.loads((work / "capture-summary.json").read_text())
        print()
        print(HEADER)
        for pair in pairs[: args.rows]:
            print(format_row(pair))
        if len(pairs) > args.rows:
            print(f"... and {len(pairs) - args.rows} more in {work / 'capture.jsonl'}")
        complete = len(pairs) == sent
        print(
            f"\ncompleteness: {len(pairs)} RRPairs for {sent} requests served "
            f"({100 * len(pairs) / max(sent, 1):.1f}%); kernel drops: "
            + (", ".join(f"{k}={v}" for k, v in summary.items() if k.startswith("drop_") and v)
               or "none")
        )  # fmt: skip

        _step(4, f"nodetap export --forwarder {fwd} (what the forwarder stored)")
        stored_path = work / "stored.jsonl"
        exp = _run(_nodetap("export", "--forwarder", fwd, "-w", str(stored_path)))
        if exp.returncode != 0:
            log = (work / "forwarder.log").read_text(errors="replace")
            raise NodetapError(f"export from the forwarder failed: {exp.stderr.strip()}\n{log}")
        _run(_nodetap("export", "--forwarder", fwd, "-o", "har", "-w", str(work / "capture.har")))
        stored = sum(1 for _ in jsonl.read_path(str(stored_path)))
        print(f"the forwarder stored {stored} RRPairs (HAR: {work / 'capture.har'})")
        procs.stop(forwarder)

        _step(5, f"nodetap replay against a fresh demo service on {target}")
        procs.stop(app)
        _start_app(procs, app_port)
        replay = _run(
            _nodetap(
                "replay",
                str(stored_path),
                "--target",
                target,
                "--vusers",
                "1",
                "--ignore-header",
                "X-Request-Id",
                "--ignore-header",
                "Date",
                "--ignore-json-path",
                "$.servedAt",
                "--report",
                str(work / "replay-report.json"),
                "--no-progress",
            )
        )
        print(replay.stdout.rstrip())
        if replay.returncode != 0:
            print(replay.stderr.rstrip(), file=sys.stderr)

    print(f"\nfiles: {work}")
    ok = complete and stored == len(pairs) and replay.returncode == 0
    print("demo: OK" if ok else "demo: FAILED (see above)")
    return 0 if ok else 1
