"""A plain (non-editable) install works: the wheel carries the BPF sources as package data of
the ``bpf`` package, and the installed agent finds them through importlib.resources.

The wheel is built from the files the Dockerfile copies into the image (its COPY lines), so
the image's plain install gets what this test installs. It goes, without dependencies, into
a throwaway venv made like the image's (``--system-site-packages``: BCC comes from Debian);
the third-party dependencies come from this test's own environment through a ``.pth`` line
(its editable nodetap is not taken: a directory named in a ``.pth`` has its own ``.pth``
files ignored). Every check runs in that venv with ``-I``, outside the source tree.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from agent import loader

REPO = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = "/usr/bin/python3"

pytestmark = pytest.mark.slow

# Run in the installed venv: where the packages and their BPF sources were found.
WHERE = """
import importlib.resources, json
import agent, bpf
from agent import loader
from agent.packet import live
print(json.dumps({
    "agent": agent.__file__,
    "bpf": str(importlib.resources.files("bpf")),
    "bpf_dir": str(loader.BPF_DIR),
    "program_text": loader.program_text(),
    "packet_filter": live.BPF_SOURCE.read_text(),
}))
"""

# Run in the installed venv as root with BCC: compile and load from the installed copy the
# capture programs (the loader's text and -I) and the packet filter (live.py's file).
COMPILE = """
import os
from bcc import BPF
from agent import loader
from agent.packet import live
opts = loader.LoadOptions(ringbuf_pages=64, max_conns=1024)
bpf = BPF(text=loader.program_text().encode(), cflags=loader.cflags(opts))
bpf.cleanup()
bpf, fn = live._load_filter("lo", [8080])
os.close(fn.sock)
bpf.cleanup()
print("compiled")
"""


def _run(argv: list[str], cwd: Path, timeout: float = 300) -> str:
    proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(argv[:3])} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def _dockerfile_sources() -> list[str]:
    """What the image's own stage (the last) copies from the checkout: the builder stage's
    core/ and the `COPY --from=` of its wheel are not the Python package's sources."""
    names: list[str] = []
    for line in (REPO / "Dockerfile").read_text().splitlines():
        if line.startswith("FROM "):
            names = []
        elif line.startswith("COPY ") and "--from=" not in line:
            names += line.split()[1:-1]
    return names


def test_the_image_installs_the_core_built_in_a_builder_stage() -> None:
    """The Docker image carries nodetap_core (the default decoder): a builder stage makes its
    wheel from core/ with its lock file, and the image installs and imports it."""
    text = (REPO / "Dockerfile").read_text()
    builder, _, final = text.partition("\nFROM debian:bookworm-slim\n")
    assert final, "the image's own stage is not FROM debian:bookworm-slim"
    assert " AS core" in builder and "COPY core/src ./src" in builder
    assert "maturin build --release --locked" in builder
    assert "COPY --from=core /wheels" in final
    assert "nodetap_core-*.whl" in final and "import bcc, nftables, nodetap_core" in final
    assert "core" not in _dockerfile_sources()


@pytest.fixture(scope="module")
def venv_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway venv with nodetap installed from a wheel (not editable)."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip(f"{SYSTEM_PYTHON} not found (the image and scripts/setup.sh use it)")
    tmp = tmp_path_factory.mktemp("plain-install")
    src = tmp / "src"
    src.mkdir()
    for name in _dockerfile_sources():
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, src / name)
    wheels = tmp / "wheels"
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    _run(
        [
            *pip,
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(wheels),
            str(src),
        ],
        tmp,
    )
    (wheel,) = wheels.glob("nodetap-*.whl")
    venv = tmp / "venv"
    _run([SYSTEM_PYTHON, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], tmp)
    python = venv / "bin" / "python"
    site = _run(
        [str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], tmp
    )
    (Path(site.strip()) / "nodetap-test-deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    _run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)], tmp)
    shutil.rmtree(src)  # nothing may come from a source tree
    return python


def test_installed_agent_finds_its_bpf_sources(venv_python: Path) -> None:
    found = json.loads(_run([str(venv_python), "-I", "-c", WHERE], venv_python.parents[2]))
    site = Path(
        _run(
            [
                str(venv_python),
                "-I",
                "-c",
                "import sysconfig; print(sysconfig.get_path('purelib'))",
            ],
            REPO,
        ).strip()
    )
    assert Path(found["agent"]).is_relative_to(site)
    assert Path(found["bpf"]) == Path(found["bpf_dir"]) == site / "bpf"
    shipped = {p.name for p in (site / "bpf").iterdir() if p.suffix in (".c", ".h")}
    assert shipped == {p.name for p in (REPO / "bpf").iterdir() if p.suffix in (".c", ".h")}
    assert found["program_text"] == loader.program_text()
    assert found["packet_filter"] == (REPO / "bpf" / "packet_filter.c").read_text()


@pytest.mark.bpf
@pytest.mark.root
def test_installed_copy_compiles(venv_python: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    out = _run([str(venv_python), "-I", "-c", COMPILE], venv_python.parents[2], timeout=120)
    assert out.strip().endswith("compiled")
