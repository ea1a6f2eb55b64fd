"""Go net/http peers, built once per test session into a cache directory: a server serving
files with http.ServeFile and reading uploads (go_servefile.go, with a log of every request
it handled), and a client making a list of requests on one keep-alive connection
(go_client.go, printing what it got)."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.support.peers.process import serving
from tests.support.servers import free_port

HERE = Path(__file__).parent
_built: dict[str, Path] = {}


def build(name: str = "go_servefile") -> Path:
    """The compiled program HERE/NAME.go (go build, cached for the session)."""
    if name not in _built:
        env_cache = Path.home() / ".cache" / "nodetap" / "go-build"
        out = Path.home() / ".cache" / "nodetap" / "peers" / name
        subprocess.run(
            [shutil.which("go") or "go", "build", "-o", str(out), str(HERE / f"{name}.go")],
            check=True,
            capture_output=True,
            timeout=300,
            env={
                "PATH": "/usr/local/go/bin:/usr/bin:/bin",
                "HOME": str(Path.home()),
                "GOCACHE": str(env_cache),
                "GOFLAGS": "-mod=mod",
                "GO111MODULE": "off",
            },
        )
        _built[name] = out
    return _built[name]


@contextlib.contextmanager
def go_servefile(root: Path, log: Path | None = None) -> Iterator[int]:
    """Serve root's files (and POST uploads); yields the port. With `log`: a line per
    request handled, see go_log()."""
    port = free_port()
    with serving([str(build()), str(port), str(root), *([str(log)] if log else [])], port):
        yield port


def go_log(log: Path) -> list[tuple[str, str, int, int, int]]:
    """The server's log: (method, path, client port, request body bytes, status)."""
    out = []
    for line in log.read_text().splitlines():
        m, path, port, n, status = line.split()
        out.append((m, path, int(port), int(n), int(status)))
    return out


@dataclass
class GoAnswer:
    method: str  # GET, POST (with its length) or CHUNKED (a POST sent chunked)
    path: str
    status: int
    size: int
    sha256: str
    local_port: int


def go_client(base: str, requests: list[str]) -> list[GoAnswer]:
    """Run the Go client: `requests` ("GET PATH", "POST PATH SIZE", "CHUNKED PATH SIZE") in
    order on one connection; what it got for each."""
    run = subprocess.run(
        [str(build("go_client")), base, *requests],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    out = []
    for line in run.stdout.splitlines():
        m, path, status, size, digest, port = line.split()
        out.append(GoAnswer(m, path, int(status), int(size), digest, int(port)))
    return out
