"""A Go net/http server serving files with http.ServeFile (go_servefile.go), built once
per test session into a cache directory."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.support.peers.process import serving
from tests.support.servers import free_port

SOURCE = Path(__file__).with_name("go_servefile.go")
_built: dict[str, Path] = {}


def build() -> Path:
    """The compiled server (go build, cached for the session)."""
    if "bin" not in _built:
        env_cache = Path.home() / ".cache" / "nodetap" / "go-build"
        out = Path.home() / ".cache" / "nodetap" / "peers" / "go_servefile"
        subprocess.run(
            [shutil.which("go") or "go", "build", "-o", str(out), str(SOURCE)],
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
        _built["bin"] = out
    return _built["bin"]


@contextlib.contextmanager
def go_servefile(root: Path) -> Iterator[int]:
    """Serve root's files; yields the port."""
    port = free_port()
    with serving([str(build()), str(port), str(root)], port):
        yield port
