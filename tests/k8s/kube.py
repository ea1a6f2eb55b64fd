"""kubectl binaries for rendering the manifests: the one on PATH (1.32 on these machines) and
Debian's kubernetes-client 1.20 (the fallback the README names), unpacked from its package
into a cache directory (it conflicts with an installed kubectl, so it is not installed)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
DAEMONSET = REPO / "daemonset"


@cache
def legacy_kubectl() -> str | None:
    """kubectl 1.20 from Debian's kubernetes-client: $NODETAP_KUBECTL_LEGACY, or unpacked
    from the package (apt-get download) into a temporary cache. None when unavailable."""
    env = os.environ.get("NODETAP_KUBECTL_LEGACY")
    if env:
        return env
    cache_dir = Path(tempfile.gettempdir()) / "nodetap-kubectl-legacy"
    binary = cache_dir / "root" / "usr" / "bin" / "kubectl"
    if binary.exists():
        return str(binary)
    if not shutil.which("apt-get"):
        return None
    cache_dir.mkdir(parents=True, exist_ok=True)
    try:
        subprocess.run(
            ["apt-get", "download", "-qq", "kubernetes-client"],
            cwd=cache_dir,
            check=True,
            capture_output=True,
            timeout=120,
        )
        deb = next(cache_dir.glob("kubernetes-client_*.deb"))
        subprocess.run(
            ["dpkg-deb", "-x", str(deb), str(cache_dir / "root")],
            check=True,
            capture_output=True,
            timeout=60,
        )
    except (subprocess.SubprocessError, StopIteration, OSError):
        return None
    return str(binary) if binary.exists() else None


def kubectls() -> list[tuple[str, str]]:
    """(label, path) of every kubectl available to render with."""
    found = []
    current = shutil.which("kubectl")
    if current:
        found.append(("kubectl", current))
    legacy = legacy_kubectl()
    if legacy:
        found.append(("kubectl-1.20", legacy))
    return found


def render(kubectl: str, path: Path) -> list[dict]:  # type: ignore[type-arg]
    r = subprocess.run(
        [kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=60
    )
    if r.returncode != 0:
        raise AssertionError(f"{kubectl} kustomize {path} failed: {r.stderr}")
    return [d for d in yaml.safe_load_all(r.stdout) if d]
