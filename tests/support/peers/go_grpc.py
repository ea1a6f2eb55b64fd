"""grpc-go server and client, and a Go h2c server (golang.org/x/net/http2/h2c: prior
knowledge and HTTP/1.1 `Upgrade: h2c`), from go_grpc/ (a Go module: grpc-go and x/net come
through the Go module proxy on the first build), built once per source into a cache."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.support.peers.process import serving
from tests.support.servers import free_port

SOURCE = Path(__file__).with_name("go_grpc")
_CACHE = Path.home() / ".cache" / "nodetap"


def build() -> Path:
    """The compiled program (cached by the hash of its sources)."""
    h = hashlib.sha256()
    for f in sorted(SOURCE.iterdir()):
        h.update(f.name.encode() + f.read_bytes())
    out = _CACHE / "peers" / f"go_grpc-{h.hexdigest()[:12]}"
    if not out.exists():
        env = {
            **os.environ,
            "PATH": f"/usr/local/go/bin:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "GOCACHE": str(_CACHE / "go-build"),
            "GOFLAGS": "-mod=readonly",
        }
        tmp = out.with_suffix(".tmp")
        subprocess.run(
            [shutil.which("go", path=env["PATH"]) or "go", "build", "-o", str(tmp), "."],
            cwd=SOURCE,
            check=True,
            capture_output=True,
            timeout=900,
            env=env,
        )
        tmp.rename(out)
    return out


def _env(extra: dict[str, str] | None) -> dict[str, str] | None:
    return {**os.environ, **extra} if extra else None


@contextlib.contextmanager
def grpc_server(env: dict[str, str] | None = None) -> Iterator[int]:
    """grpc-go serving test.Echo; yields the port. ``env``: GO_GRPC_TLS_CERT and
    GO_GRPC_TLS_KEY serve over TLS (go_grpc/creds.go)."""
    port = free_port()
    with serving([str(build()), "server-grpc", str(port)], port, env=_env(env)):
        yield port


@contextlib.contextmanager
def h2c_server(root: Path) -> Iterator[int]:
    """Go's net/http with h2c serving root's files; yields the port."""
    port = free_port()
    with serving([str(build()), "server-h2c", str(port), str(root)], port):
        yield port


def client_calls(
    port: int, env: dict[str, str] | None = None
) -> list[tuple[str, list[bytes], list[bytes], int, str]]:
    """grpc-go's client makes every kind of call (one connection); what it sent and got.
    ``env``: GO_GRPC_TLS_CA dials over TLS trusting that CA."""
    out = subprocess.run(
        [str(build()), "client-grpc", str(port)],
        capture_output=True,
        check=True,
        timeout=120,
        env=_env(env),
    ).stdout
    calls = []
    for line in out.splitlines():
        c = json.loads(line)
        calls.append(
            (
                c["method"],
                [_b64(m) for m in c["requests"] or []],
                [_b64(m) for m in c["responses"] or []],
                int(c["code"]),
                c["message"],
            )
        )
    return calls


def _b64(s: str | None) -> bytes:
    return base64.b64decode(s or "")  # Go's JSON writes []byte as base64
