"""Helpers for forwarder tests: real forwarder and producer processes, reading the store."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from forwarder.filters import matches
from forwarder.storage.sqlite import SqliteStore
from nodetap.v1 import forwarder_pb2 as fpb
from nodetap.v1 import rrpair_pb2 as pb
from tests.support.servers import wait_for_port

ROOT = Path(__file__).resolve().parents[2]


def forwarder_argv(port: int, data_dir: Path, *extra: str, host: str = "127.0.0.1") -> list[str]:
    return [
        sys.executable,
        "-m",
        "cli",
        "forwarder",
        "--listen",
        f"{host}:{port}",
        "--data-dir",
        str(data_dir),
        *extra,
    ]


def start_forwarder(port: int, data_dir: Path, *extra: str) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        forwarder_argv(port, data_dir, *extra),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_for_port("127.0.0.1", port, timeout=20)
    except TimeoutError:
        stop(proc)
        raise
    return proc


def stop(proc: subprocess.Popen[bytes] | subprocess.Popen[str], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def forwarder_process(port: int, data_dir: Path, *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = start_forwarder(port, data_dir, *extra)
    try:
        yield proc
    finally:
        stop(proc)


def start_capture(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """`nodetap capture ARGS` (stderr piped), returned once it says it is capturing; stopped
    if it does not within 60 s. env: more environment variables (NODETAP_DECODER)."""
    cap = subprocess.Popen(
        [sys.executable, "-m", "cli", "capture", *args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env} if env else None,
    )
    try:
        assert cap.stderr is not None
        deadline = time.monotonic() + 60
        while "nodetap: capturing" not in (line := cap.stderr.readline()):
            assert line and time.monotonic() < deadline, "capture did not start"
    except BaseException:
        stop(cap)
        raise
    return cap


def capture_to_forwarder(
    web_port: int, count: int, forwarder: str, work: Path, *extra: str
) -> subprocess.Popen[str]:
    """`nodetap capture` of count RRPairs on web_port sent to forwarder, spooling in
    work/spool and writing work/local.jsonl too (see start_capture)."""
    return start_capture(
        "--port",
        str(web_port),
        "--count",
        str(count),
        "--forwarder",
        forwarder,
        "--spool-dir",
        str(work / "spool"),
        "-o",
        str(work / "local.jsonl"),
        *extra,
    )


def producer_argv(addr: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tests.forwarder.producer", "--forwarder", addr, *extra]


def start_producer(
    addr: str, *extra: str, prefix: list[str] | None = None
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*(prefix or []), *producer_argv(addr, *extra)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def read_until(proc: subprocess.Popen[str], prefix: str, timeout: float = 60) -> str:
    """Lines of the producer's stdout until one starts with prefix; return that line."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError(f"producer ended (rc={proc.poll()}) before {prefix!r}")
        if line.startswith(prefix):
            return line.strip()
    raise AssertionError(f"no {prefix!r} from the producer within {timeout}s")


def finish_producer(proc: subprocess.Popen[str], timeout: float = 60) -> dict[str, int]:
    """Let a --hold producer close; return its counters."""
    assert proc.stdin is not None
    proc.stdin.close()
    line = read_until(proc, "COUNTERS", timeout)
    proc.wait(timeout=timeout)
    return dict(json.loads(line.split(" ", 1)[1]))


def stored(data_dir: Path, flt: fpb.Filter | None = None) -> list[pb.RRPair]:
    """Every RRPair in a forwarder's data dir (read directly from its store)."""
    store = SqliteStore(str(data_dir), sync="normal")
    try:
        return [p for p in store.query(flt or fpb.Filter()) if flt is None or matches(flt, p)]
    finally:
        store.close()


def grep_dir(directory: Path, needles: list[bytes]) -> dict[str, list[str]]:
    """{needle: [files containing it]} over every file under directory (or that one file)."""
    hits: dict[str, list[str]] = {}
    paths = [directory] if directory.is_file() else directory.rglob("*")
    for path in paths:
        if path.is_file():
            data = path.read_bytes()
            for n in needles:
                if n in data:
                    hits.setdefault(n.decode("latin-1"), []).append(path.name)
    return hits


COUNTED_CLIENT = """
import sys, time, urllib.request
url, n, secret = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for i in range(n):
    auth = {"Authorization": "Bearer " + secret} if secret else {}
    req = urllib.request.Request(f"{url}/hello?i={i}", headers=auth)
    with urllib.request.urlopen(req, timeout=10) as r:
        r.read()
    print(i + 1, flush=True)
    time.sleep(0.01)
if sys.argv[4:] == ["favicon"]:
    try:
        urllib.request.urlopen(f"{url}/favicon.ico", timeout=10)
    except Exception:
        pass
"""


class CountedClient:
    """n requests GET URL/hello?i=... (with a bearer secret when given, then /favicon.ico when
    asked), 10 ms apart, from a Python process; ``wait_for(k)`` returns once k were answered."""

    def __init__(self, url: str, n: int, secret: str = "", favicon: bool = False) -> None:
        self.n = n
        argv = [sys.executable, "-c", COUNTED_CLIENT, url, str(n), secret]
        self.proc = subprocess.Popen(
            [*argv, *(["favicon"] if favicon else [])], stdout=subprocess.PIPE, text=True
        )

    def wait_for(self, k: int) -> None:
        assert self.proc.stdout is not None
        while int(self.proc.stdout.readline() or self.n) < k:
            pass

    def wait(self, timeout: float) -> None:
        self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        stop(self.proc)
