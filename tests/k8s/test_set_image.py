"""The image name and tag are given once (issue 25): scripts/set-image.sh rewrites every
kustomization that sets the nodetap image, and every manifest then renders that image (the
lab overlay keeps its locally built one unless asked)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.k8s.kube import DAEMONSET, render
from tests.k8s.test_manifests import TARGETS, _kubectl, _pod_specs

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "set-image.sh"


def _images(root: Path, target: str) -> set[str]:
    """The nodetap images a target renders (the scale-out overlay also runs NATS's own)."""
    return {
        c["image"]
        for _, spec in _pod_specs(render(_kubectl(), root / target))
        for c in spec.get("containers", []) + spec.get("initContainers", [])
        if not c["image"].startswith("nats:")
    }


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    dst = tmp_path / "daemonset"
    shutil.copytree(DAEMONSET, dst)
    return dst


def test_one_command_sets_every_manifest(copy: Path) -> None:
    image = "registry.example.com:5000/team/nodetap:1.2.3"
    done = _run("--dir", str(copy), image)
    assert done.returncode == 0, done.stderr
    # the labs' overlays (and the Kubernetes lab's, built on them) keep the local image
    local = ("overlays/lab", "overlays/k8s-lab", "overlays/lab-replay", "overlays/k8s-lab-replay")
    for target in TARGETS:
        want = {"nodetap:dev"} if target in local else {image}
        assert _images(copy, target) == want, target
    # and again: the overlays now name what base/ gives, and still follow
    again = "ghcr.io/me/agent:2"
    assert _run("--dir", str(copy), again).returncode == 0
    assert _images(copy, "overlays/production") == {again}
    assert _images(copy, "overlays/lab") == {"nodetap:dev"}
    assert _images(copy, "overlays/lab-replay") == {"nodetap:dev"}
    # the checked-in tree is untouched
    assert image not in {i for t in TARGETS for i in _images(DAEMONSET, t)}


def test_lab_too_when_asked_and_tag_defaults_to_the_version(copy: Path) -> None:
    done = _run("--lab", "--dir", str(copy), "ghcr.io/me/nodetap")
    assert done.returncode == 0, done.stderr
    version = _images(DAEMONSET, "")
    assert len(version) == 1
    tag = next(iter(version)).rsplit(":", 1)[1]
    for target in TARGETS:
        assert _images(copy, target) == {f"ghcr.io/me/nodetap:{tag}"}, target


def test_check_lists_what_each_kustomization_sets() -> None:
    done = _run("--check")
    assert done.returncode == 0, done.stderr
    rows = dict(line.split("\t") for line in done.stdout.splitlines())
    assert "kustomization.yaml" in rows and "replay-agent/kustomization.yaml" in rows
    assert rows["overlays/lab/kustomization.yaml"] == "nodetap:dev"


@pytest.mark.parametrize("bad", ["Registry/NodeTap:1", "nodetap:bad tag", "nodetap:-x"])
def test_bad_names_are_one_clear_line(copy: Path, bad: str) -> None:
    before = {p: p.read_text() for p in copy.rglob("kustomization.yaml")}
    done = _run("--dir", str(copy), bad)
    assert done.returncode == 2
    assert done.stderr.startswith("set-image: ") and len(done.stderr.splitlines()) == 1
    assert {p: p.read_text() for p in copy.rglob("kustomization.yaml")} == before
